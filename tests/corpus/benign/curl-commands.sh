# Can you turn these into a Python script?
curl -s https://api.corp.invalid/v1/items \
  -H "Authorization: Bearer $API_TOKEN" \
  -H "Content-Type: application/json"
curl -u "$USER:$PASSWORD" https://jenkins.corp.invalid/job/build/api/json
curl -H "x-api-key: ${ANTHROPIC_API_KEY}" https://api.anthropic.com/v1/models
export OPENAI_API_KEY="$(pass show openai/api-key)"
psql "postgresql://app@db.internal:5432/ipsum?sslmode=require"
git clone https://github.com/corp/lorem-ipsum.git
docker login -u ci --password-stdin registry.corp.invalid < /run/secrets/registry_password
