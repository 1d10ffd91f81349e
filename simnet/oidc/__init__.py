"""A small, real OpenID Connect provider shaped like BTCofAZ's WordPress OIDC server plugin
(SIMULATION): discovery, authorization code + PKCE (S256), RS256 id_tokens, JWKS, userinfo."""
