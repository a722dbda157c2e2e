"""Reads with rules of the oauth_provider app: the signing keys as the toolkit uses them
(`signing_keys`)."""
