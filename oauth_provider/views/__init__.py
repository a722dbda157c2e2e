"""The authorization server's endpoints and browser pages: authorization and consent (`authorize`),
the token, revocation, introspection and userinfo endpoints (`tokens`), the device flow (`device`),
discovery and the JWKS (`metadata`), dynamic client registration (`registration`), and the page of
the applications a user authorized (`applications`)."""
