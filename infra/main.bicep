// The MCP gateway on Azure Functions Flex Consumption, with everything it needs:
// one user-assigned identity, keyless storage, Key Vault (RBAC), Log Analytics and
// Application Insights with Entra-authenticated ingestion, and optionally a virtual
// network with private endpoints (vnetEnabled).
// Written in the Bicep subset that pycep-parser 0.5.1 (checkov) parses: see README.md.

targetScope = 'resourceGroup'

@description('Name of the environment (azd: AZURE_ENV_NAME); seeds resource names and tags.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region of the resources; must offer Flex Consumption.')
param location string = resourceGroup().location

@description('MCP_GATEWAY_CONFIG: path of the gateway config file, relative to the project root, deployed with the code (the app reads it beside function_app.py). Never the JSON itself: azd\'s parameter substitution breaks inline JSON.')
param gatewayConfigFile string = 'gateway.json'

@description('MCP_GATEWAY_LOG_LEVEL: level of the gateway loggers.')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

@description('Python version of the Functions worker.')
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
param pythonVersion string = '3.11'

@description('Upper bound of instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Instances kept running for the HTTP functions, so a first connect meets no cold start (billed while idle). 0: scale to zero.')
@minValue(0)
@maxValue(1000)
param alwaysReadyInstanceCount int = 1

@description('Concurrent HTTP requests (open SSE streams included) one instance takes before the platform adds another. Python\'s platform default is 1.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 64

@description('How deployments and setting changes reach running instances: Recreate (restart all; open streams end) or RollingUpdate (preview: drain in batches, open streams continue on the old instances).')
@allowed([
  'Recreate'
  'RollingUpdate'
])
param siteUpdateStrategy string = 'Recreate'

@description('MCP_GATEWAY_ACCESS_LOG: one log line per request (method, path, server, status, ms); the Functions host records requests already.')
param accessLog bool = false

@description('Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Storage redundancy of the function app storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Days of log retention in Log Analytics.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Optional: object id of the person or pipeline deploying, granted Key Vault Secrets Officer so it can put secrets in place (azd: AZURE_PRINCIPAL_ID). Empty: no grant.')
param deployerPrincipalId string = ''

@description('Type of deployerPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param deployerPrincipalType string = 'User'

@description('Put the gateway in a virtual network: outbound traffic through a delegated subnet (for private backends in peered networks), storage and Key Vault behind private endpoints with public access off.')
param vnetEnabled bool = false

@description('Address space of the virtual network (vnetEnabled); must not overlap the networks you peer it with.')
param vnetAddressPrefix string = '10.90.0.0/16'

@description('Subnet of the app\'s outbound traffic, delegated to Microsoft.App/environments (vnetEnabled).')
param appSubnetPrefix string = '10.90.0.0/24'

@description('Subnet of the private endpoints (vnetEnabled).')
param privateEndpointSubnetPrefix string = '10.90.1.0/24'

@description('With vnetEnabled: IP ranges (CIDR) that may still reach Key Vault from outside the network, e.g. where you write secrets from. Empty: the vault is private.')
param keyVaultAllowedIpRanges array = []

@description('Key Vault purge protection. Off by default: the vault holds only values you can issue again (subscription keys, client secrets), soft delete still recovers a deleted secret, and once on it can never be turned off and a deleted vault holds its name until the retention ends (azd down && azd up fails). Turn it on where policy demands it.')
param keyVaultPurgeProtection bool = false

@description('Days a deleted vault or secret stays recoverable (and, with purge protection, holds its name).')
@minValue(7)
@maxValue(90)
param keyVaultRetentionInDays int = 90

@description('Name of the Key Vault. Empty: derived from the environment (kv-<token>). Give a new one when the old name is held by a deleted, purge-protected vault.')
@maxLength(24)
param keyVaultName string = ''

@description('Where alerts (failed /healthz, 5xx answers, Key Vault 403s) are mailed. Empty: they show in the portal only.')
param alertEmail string = ''

@secure()
@description('MCP_GATEWAY_SIGNING_KEY, kept in Key Vault as mcp-gateway-signing-key. azd passes the vault\'s current value back (main.parameters.json), so a re-provision keeps the key; the default, a new random value, replaces it at every deployment that does not pass it. Shorter than 32 characters, it is completed with random ones.')
param signingKey string = newGuid()

@description('Tags applied to every resource.')
param tags object = {}

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var allTags = union(tags, {
  'azd-env-name': environmentName
})
var functionAppName = 'func-mcpgw-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-mcpgw-${resourceToken}'
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-mcpgw-${resourceToken}'
    applicationInsightsName: 'appi-mcpgw-${resourceToken}'
    location: location
    tags: allTags
    retentionInDays: logRetentionInDays
    publisherPrincipalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: allTags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    principalId: identity.outputs.principalId
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    networkDefaultAction: vnetEnabled ? 'Deny' : 'Allow'
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: empty(keyVaultName) ? 'kv-${resourceToken}' : keyVaultName
    location: location
    tags: allTags
    enablePurgeProtection: keyVaultPurgeProtection
    softDeleteRetentionInDays: keyVaultRetentionInDays
    readerPrincipalId: identity.outputs.principalId
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
    secretsOfficerPrincipalId: deployerPrincipalId
    secretsOfficerPrincipalType: deployerPrincipalType
    publicNetworkAccess: (vnetEnabled && empty(keyVaultAllowedIpRanges)) ? 'Disabled' : 'Enabled'
    networkDefaultAction: vnetEnabled ? 'Deny' : 'Allow'
    allowedIpRanges: vnetEnabled ? keyVaultAllowedIpRanges : []
    signingKey: signingKey
  }
}

module network 'modules/network.bicep' = if (vnetEnabled) {
  name: 'network'
  params: {
    name: 'vnet-mcpgw-${resourceToken}'
    location: location
    tags: allTags
    addressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    storageAccountId: storage.outputs.id
    keyVaultId: keyVault.outputs.id
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: functionAppName
    planName: 'plan-mcpgw-${resourceToken}'
    location: location
    tags: allTags
    appTags: {
      'azd-service-name': 'gateway'
    }
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyInstanceCount: alwaysReadyInstanceCount
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    siteUpdateStrategy: siteUpdateStrategy
    accessLog: accessLog
    instanceMemoryMB: instanceMemoryMB
    virtualNetworkSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
    keyVaultUri: keyVault.outputs.uri
    keyVaultName: keyVault.outputs.name
    signingKeyName: keyVault.outputs.signingKeyName
    gatewayConfigFile: gatewayConfigFile
    logLevel: logLevel
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    nameSuffix: resourceToken
    location: location
    tags: allTags
    gatewayHostName: functionApp.outputs.defaultHostName
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    keyVaultId: keyVault.outputs.id
    alertEmail: alertEmail
  }
}

@description('Base URL of the gateway; MCP servers are at GATEWAY_URL/mcp/<server>.')
output GATEWAY_URL string = 'https://${functionApp.outputs.defaultHostName}'

@description('MCP servers are at MCP_BASE_URL/<server>: the URL an MCP client (VS Code mcp.json) is given.')
output MCP_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}/mcp'

@description('Protected resource metadata (RFC 9728) of a server that takes Entra tokens: PROTECTED_RESOURCE_METADATA_URL/<server>.')
output PROTECTED_RESOURCE_METADATA_URL string = 'https://${functionApp.outputs.defaultHostName}/.well-known/oauth-protected-resource/mcp'

@description('Entra tenant of the subscription: auth.entra.tenantId in the gateway config.')
output ENTRA_TENANT_ID string = tenant().tenantId

@description('Sign-in\'s shared state: gateway.store = {"tableStorage": {"endpoint": STATE_TABLE_ENDPOINT, "table": STATE_TABLE_NAME}}.')
output STATE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint

@description('Table for sign-in\'s shared state (the gateway identity is Storage Table Data Contributor on the account).')
output STATE_TABLE_NAME string = storage.outputs.stateTableName

@description('Name of the function app (for func azure functionapp publish / az functionapp).')
output FUNCTION_APP_NAME string = functionApp.outputs.name

@description('Client id of the gateway managed identity (its AZURE_CLIENT_ID app setting).')
output IDENTITY_CLIENT_ID string = identity.outputs.clientId

@description('URI of the Key Vault (MCP_GATEWAY_KEY_VAULT_URL).')
output KEY_VAULT_URI string = keyVault.outputs.uri

@description('Name of the Key Vault (for az keyvault secret set).')
output KEY_VAULT_NAME string = keyVault.outputs.name
