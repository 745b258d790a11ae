// Key Vault for the gateway's secrets (subscription keys, backend client secrets), and the
// gateway's signing key (MCP_GATEWAY_SIGNING_KEY), which this module writes. RBAC mode only: no
// access policies. Soft delete keeps a deleted secret (or vault) recoverable for the retention
// period. Purge protection is a parameter: once on it cannot be turned off, and a deleted vault
// then holds its name until the retention period ends.

@description('Name of the Key Vault (3-24 characters).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the vault.')
param tags object = {}

@description('Days a deleted vault or secret stays recoverable.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Forbid purging a deleted vault or secret before the retention period ends. Cannot be turned off once on.')
param enablePurgeProtection bool = false

@description('Principal id of the gateway identity (gets Key Vault Secrets User).')
param readerPrincipalId string

@description('Optional principal (the person or pipeline deploying) that may write secrets. Empty: none.')
param secretsOfficerPrincipalId string = ''

@description('Type of secretsOfficerPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param secretsOfficerPrincipalType string = 'User'

// Private by default: main.bicep opens the vault only when it deploys without a network, or
// for the IP ranges it is given (where secrets are written from).
@description('Enabled without a virtual network, or with allowedIpRanges; Disabled: private endpoint only.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Disabled'

@description('Default action of the vault firewall: Deny with a private endpoint, Allow without a network.')
@allowed([
  'Allow'
  'Deny'
])
param networkDefaultAction string = 'Deny'

@description('IP ranges (CIDR) let through the firewall when the default action is Deny.')
param allowedIpRanges array = []

@description('Log Analytics workspace that receives the vault\'s audit events (every secret read, and every refusal).')
param logAnalyticsWorkspaceId string

@secure()
@description('MCP_GATEWAY_SIGNING_KEY, stored as the secret mcp-gateway-signing-key. A value shorter than 32 characters (azd generates 15 on a first provision) is completed with signingKeyFill.')
param signingKey string

@secure()
@description('Random characters (a new GUID at each deployment) that complete a signingKey shorter than 32 characters. A key of 32 or more, such as the one azd reads back from the vault, is stored as it is.')
param signingKeyFill string = newGuid()

var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficerRoleId = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // ARM takes true or null here: false is refused on a vault that never had it.
    enablePurgeProtection: enablePurgeProtection ? true : null
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: networkDefaultAction
      ipRules: [for ipRange in allowedIpRanges: {
        value: ipRange
      }]
    }
  }
}

// The gateway's HMAC key: every instance resolves the app setting's Key Vault reference to it.
// 32 is the gateway's minimum (shared/signing.py). The condition is parenthesised because
// pycep-parser 0.5.1 binds `?` tighter than `>=`.
resource signingKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'mcp-gateway-signing-key'
  properties: {
    value: (length(signingKey) >= 32) ? signingKey : '${signingKey}${signingKeyFill}'
    contentType: 'text/plain'
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, readerPrincipalId, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(secretsOfficerPrincipalId)) {
  name: guid(vault.id, secretsOfficerPrincipalId, keyVaultSecretsOfficerRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficerRoleId)
    principalId: secretsOfficerPrincipalId
    principalType: secretsOfficerPrincipalType
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
output signingKeyName string = signingKeySecret.name
