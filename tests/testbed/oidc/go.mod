// The real node's OpenID Connect provider: oauth2-proxy's mockoidc on a fixed address (main.go), for the
// sign-in tests of spec.auth.
module phlo.dev/testbed/oidc

go 1.26.0

require github.com/oauth2-proxy/mockoidc v0.0.0-20261103160011-e06ed0b7cb7f

require (
	github.com/go-jose/go-jose/v4 v4.1.8 // indirect
	github.com/golang-jwt/jwt/v5 v5.2.0 // indirect
)
