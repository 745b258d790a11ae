// The gateway's one user-assigned managed identity. It reads AzureWebJobsStorage and the
// deployment package, Key Vault secrets, publishes telemetry, and is the default outbound
// identity for backends (AZURE_CLIENT_ID).

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
