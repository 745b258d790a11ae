// What tells the operator the gateway is in trouble: a standard availability test of
// /healthz from several regions, and alerts when that test fails, when the gateway answers
// with 5xx (backends down or too slow: 502, 504), and when Key Vault refuses the gateway's
// identity (403: a role assignment missing or removed, so keys and secrets cannot be read).
// With alertEmail set, each alert mails it through one action group.

@description('Suffix of the resource names.')
param nameSuffix string

@description('Azure region of the availability test.')
param location string

@description('Tags applied to the resources.')
param tags object = {}

@description('Host name of the gateway (the function app\'s default host name).')
param gatewayHostName string

@description('Application Insights component that runs the availability test and holds the request telemetry.')
param applicationInsightsId string

@description('Key Vault whose 403 answers raise an alert.')
param keyVaultId string

@description('Where alerts are mailed. Empty: alerts fire and show in the portal, nobody is mailed.')
param alertEmail string = ''

@description('Availability test locations (Azure Monitor location ids).')
param testLocations array = [
  'us-va-ash-azr'
  'emea-nl-ams-azr'
  'apac-sg-sin-azr'
]

@description('5xx answers in five minutes that raise the alert.')
@minValue(1)
param serverErrorThreshold int = 5

var healthTestName = 'webtest-healthz-${nameSuffix}'
var metricAlertActions = empty(alertEmail) ? [] : [
  {
    actionGroupId: actionGroup.id
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-mcpgw-${nameSuffix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'mcp-gateway'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource healthTest 'Microsoft.Insights/webtests@2022-06-15' = {
  name: healthTestName
  location: location
  // The hidden link ties the test to its component (the portal and the alert need it).
  tags: union(tags, {
    'hidden-link:${applicationInsightsId}': 'Resource'
  })
  kind: 'standard'
  properties: {
    SyntheticMonitorId: healthTestName
    Name: 'MCP gateway /healthz'
    Enabled: true
    Frequency: 300
    Timeout: 30
    Kind: 'standard'
    RetryEnabled: true
    Locations: [for id in testLocations: {
      Id: id
    }]
    Request: {
      RequestUrl: 'https://${gatewayHostName}/healthz'
      HttpVerb: 'GET'
      ParseDependentRequests: false
    }
    ValidationRules: {
      ExpectedHttpStatusCode: 200
      SSLCheck: true
      SSLCertRemainingLifetimeCheck: 7
    }
  }
}

resource healthAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-healthz-${nameSuffix}'
  location: 'global'
  tags: tags
  properties: {
    description: '/healthz failed from two or more test locations.'
    severity: 1
    enabled: true
    scopes: [
      healthTest.id
      applicationInsightsId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria'
      webTestId: healthTest.id
      componentId: applicationInsightsId
      failedLocationCount: 2
    }
    actions: metricAlertActions
  }
}

resource serverErrorAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-5xx-${nameSuffix}'
  location: location
  tags: tags
  properties: {
    description: 'The gateway answered with 5xx (502: backend refused or unreachable, 504: no answer in time).'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: 'requests | where toint(resultCode) >= 500'
          timeAggregation: 'Count'
          operator: 'GreaterThanOrEqual'
          threshold: serverErrorThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: empty(alertEmail) ? [] : [
        actionGroup.id
      ]
    }
  }
}

resource keyVaultForbiddenAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-kv-403-${nameSuffix}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Key Vault refused a request (403): the gateway cannot read subscription keys or backend secrets.'
    severity: 1
    enabled: true
    scopes: [
      keyVaultId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'forbidden'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'Microsoft.KeyVault/vaults'
          metricName: 'ServiceApiResult'
          dimensions: [
            {
              name: 'StatusCode'
              operator: 'Include'
              values: [
                '403'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Count'
        }
      ]
    }
    actions: metricAlertActions
  }
}
