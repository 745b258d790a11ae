// Flex Consumption (FC1) plan and the Linux function app that runs the gateway.
// On Flex the runtime comes from functionAppConfig.runtime: FUNCTIONS_WORKER_RUNTIME and
// FUNCTIONS_EXTENSION_VERSION must not be app settings (the platform rejects them), and
// siteConfig properties Flex does not support (ftpsState, alwaysOn, ...) are left out.

@description('Name of the function app.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region.')
param location string

@description('Tags applied to the plan.')
param tags object = {}

@description('Extra tags for the function app (azd finds the app by its azd-service-name tag).')
param appTags object = {}

@description('Python version of the worker.')
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

@description('Instances kept running for the HTTP functions, so a first connect meets no cold start. 0: scale to zero.')
@minValue(0)
@maxValue(1000)
param alwaysReadyInstanceCount int = 1

@description('Concurrent HTTP requests (open SSE streams included) one instance takes before the platform adds another.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 64

@description('Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Subnet (delegated to Microsoft.App/environments) that carries the app\'s outbound traffic. Empty: no virtual network.')
param virtualNetworkSubnetId string = ''

@description('How code and setting changes reach running instances: Recreate restarts them all at once (open streams end), RollingUpdate (preview) drains them in batches.')
@allowed([
  'Recreate'
  'RollingUpdate'
])
param siteUpdateStrategy string = 'Recreate'

@description('MCP_GATEWAY_ACCESS_LOG: one log line per request from the gateway itself.')
param accessLog bool = false

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Blob endpoint of the storage account (https://NAME.blob.core.windows.net/).')
param storageBlobEndpoint string

@description('Blob container that holds the deployment package.')
param deploymentContainerName string

@description('Application Insights component that receives telemetry.')
param applicationInsightsName string

@description('Log Analytics workspace that receives the function app\'s logs (FunctionAppLogs).')
param logAnalyticsWorkspaceId string

@description('Default Key Vault URL for secret references (MCP_GATEWAY_KEY_VAULT_URL).')
param keyVaultUri string

@description('Name of the Key Vault that holds the signing key.')
param keyVaultName string

@description('Name of the secret that holds MCP_GATEWAY_SIGNING_KEY.')
param signingKeyName string

@description('MCP_GATEWAY_CONFIG: path of the gateway config file deployed with the code, relative to the app root.')
param gatewayConfigFile string

@description('MCP_GATEWAY_LOG_LEVEL: level of the gateway loggers.')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'INFO'

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, appTags)
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    // Key Vault references (MCP_GATEWAY_SIGNING_KEY) resolve with the user-assigned identity: the
    // site has no system-assigned one, which the platform would use by default.
    keyVaultReferenceIdentity: identityId
    // On Flex Consumption all outbound traffic then goes through the subnet.
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [
        // Host storage through the managed identity: no connection string, no key. The
        // service URI comes from the account's own endpoints (sovereign clouds differ); an
        // app with HTTP triggers only needs blob.
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: storageBlobEndpoint
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // Telemetry with Entra-authenticated ingestion (the component has local auth off).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'Authorization=AAD;ClientId=${identityClientId}'
        }
        // The HTTP-streams extension needs init indexing on Python <= 3.12.
        {
          name: 'PYTHON_ENABLE_INIT_INDEXING'
          value: '1'
        }
        // The gateway's own settings (shared/settings.py).
        {
          name: 'MCP_GATEWAY_CONFIG'
          value: gatewayConfigFile
        }
        {
          name: 'MCP_GATEWAY_KEY_VAULT_URL'
          value: keyVaultUri
        }
        {
          name: 'MCP_GATEWAY_LOG_LEVEL'
          value: logLevel
        }
        {
          name: 'MCP_GATEWAY_ACCESS_LOG'
          value: accessLog ? 'true' : 'false'
        }
        // A Key Vault reference, resolved by the platform with keyVaultReferenceIdentity: the key is
        // in no setting and no template. No version: the latest is used, so a rotated key is
        // picked up (within 24 hours, at once on a reference refresh or a configuration change).
        {
          name: 'MCP_GATEWAY_SIGNING_KEY'
          value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${signingKeyName})'
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: [
          {
            name: 'http'
            instanceCount: alwaysReadyInstanceCount
          }
        ]
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
      siteUpdateStrategy: {
        type: siteUpdateStrategy
      }
    }
  }
}

// The host's and the gateway's logs in Log Analytics, next to Key Vault's audit events.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: functionApp
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
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

// No basic (user name + password) publishing: deployments use Entra tokens (az, func, azd).
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
