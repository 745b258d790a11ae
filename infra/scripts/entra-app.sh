#!/usr/bin/env bash
# Create or update the Entra ID app registration that stands for the gateway's MCP servers:
# the resource MCP clients (VS Code) get tokens for. Safe to run again: it finds the app by
# its display name and converges it to
#   - identifier URI api://<app id>,
#   - one delegated scope, mcp.access, in v2 access tokens,
#   - pre-authorized clients (VS Code's, plus any --client-id), so users are not asked to consent,
#   - a service principal in the tenant,
# then prints what the gateway config needs (auth.entra: tenant id, audiences, scope).
#
# Needs the Azure CLI, signed in (az login) as someone allowed to register applications.
#
#   infra/scripts/entra-app.sh [--name NAME] [--client-id APP_ID]...
set -euo pipefail

VSCODE_CLIENT_ID="aebc6443-996d-45c2-90f0-388ff96faa56"
SCOPE_VALUE="mcp.access"
GUID_PATTERN='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'

usage() {
  cat <<'EOF'
usage: infra/scripts/entra-app.sh [--name NAME] [--client-id APP_ID]...

  --name NAME         display name of the app registration (default: mcp-gateway)
  --client-id APP_ID  also pre-authorize this client application (repeatable);
                      VS Code (aebc6443-996d-45c2-90f0-388ff96faa56) always is
EOF
}

name="mcp-gateway"
clients=("$VSCODE_CLIENT_ID")
while [ $# -gt 0 ]; do
  case "$1" in
    --name)
      [ $# -ge 2 ] || { echo "--name needs a value" >&2; exit 2; }
      # It goes into a JMESPath literal below: letters, digits, space, '.', '_', '-' only.
      [[ "$2" =~ ^[A-Za-z0-9][A-Za-z0-9\ ._-]{0,119}$ ]] || { echo "--name: letters, digits, space, '.', '_', '-' (up to 120): $2" >&2; exit 2; }
      name="$2"
      shift 2
      ;;
    --client-id)
      [ $# -ge 2 ] || { echo "--client-id needs a value" >&2; exit 2; }
      client=$(printf '%s' "$2" | tr 'A-F' 'a-f')
      [[ "$client" =~ $GUID_PATTERN ]] || { echo "--client-id must be an application (client) id, a GUID: $2" >&2; exit 2; }
      [[ " ${clients[*]} " == *" $client "* ]] || clients+=("$client")
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "unknown argument: $1" >&2
      usage >&2
      exit 2
      ;;
  esac
done

step() { printf '%s\n' "$*" >&2; }

new_guid() {
  if command -v uuidgen >/dev/null 2>&1; then
    uuidgen | tr 'A-F' 'a-f'
  else
    python3 -c 'import uuid; print(uuid.uuid4())'
  fi
}

tenant_id=$(az account show --query tenantId -o tsv)
graph=$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)
graph="${graph%/}"

# Find the app by display name: none (create it), one (update it), or several (refuse to guess).
# --display-name matches a prefix ("mcp-gateway" finds "mcp-gateway-dev"): keep exact matches.
app_ids=$(az ad app list --display-name "$name" --query "[?displayName=='$name'].appId" -o tsv)
count=$(printf '%s' "$app_ids" | grep -c . || true)
if [ "$count" -gt 1 ]; then
  echo "$count app registrations are named '$name'; rename or delete all but one, or pass another --name" >&2
  exit 1
elif [ "$count" -eq 1 ]; then
  app_id="$app_ids"
  step "updating app registration '$name' ($app_id)"
else
  app_id=$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg --query appId -o tsv)
  step "created app registration '$name' ($app_id)"
fi
object_id=$(az ad app show --id "$app_id" --query id -o tsv)
identifier_uri="api://$app_id"
az ad app update --id "$app_id" --identifier-uris "$identifier_uri"

# Keep the scope's id across runs: Entra refuses to replace an enabled scope.
scope_id=$(az ad app show --id "$app_id" --query "api.oauth2PermissionScopes[?value=='$SCOPE_VALUE'].id" -o tsv)
[ -n "$scope_id" ] || scope_id=$(new_guid)

scope_json=$(printf '{"id":"%s","value":"%s","type":"User","isEnabled":true,"adminConsentDisplayName":"Use the MCP gateway","adminConsentDescription":"Call the MCP servers behind the gateway as the signed-in user.","userConsentDisplayName":"Use the MCP gateway","userConsentDescription":"Call the MCP servers behind the gateway as you."}' "$scope_id" "$SCOPE_VALUE")
preauthorized=""
for client in "${clients[@]}"; do
  preauthorized="$preauthorized${preauthorized:+,}{\"appId\":\"$client\",\"delegatedPermissionIds\":[\"$scope_id\"]}"
done

# The scope must exist before clients can be pre-authorized for it: two updates.
az rest --method PATCH --uri "$graph/v1.0/applications/$object_id" --headers "Content-Type=application/json" \
  --body "{\"api\":{\"requestedAccessTokenVersion\":2,\"oauth2PermissionScopes\":[$scope_json]}}"
az rest --method PATCH --uri "$graph/v1.0/applications/$object_id" --headers "Content-Type=application/json" \
  --body "{\"api\":{\"requestedAccessTokenVersion\":2,\"oauth2PermissionScopes\":[$scope_json],\"preAuthorizedApplications\":[$preauthorized]}}"

sp_id=$(az ad sp list --filter "appId eq '$app_id'" --query "[].id" -o tsv)
if [ -z "$sp_id" ]; then
  sp_id=$(az ad sp create --id "$app_id" --query id -o tsv)
  step "created its service principal ($sp_id)"
fi

scope="$identifier_uri/$SCOPE_VALUE"
cat <<EOF
tenant id:               $tenant_id
app (client) id:         $app_id
audiences:               $app_id (v2 tokens), $identifier_uri
scope:                   $scope
pre-authorized clients:  ${clients[*]}

In gateway.json, under servers.<name>.auth:
"entra": {
  "tenantId": "$tenant_id",
  "audiences": ["$app_id", "$identifier_uri"],
  "requiredScopes": ["$scope"]
}
EOF
