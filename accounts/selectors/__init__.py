"""Reads with rules of the accounts app: users (`users`), the devices a user is signed in on
(`sessions`), second factors and recent authentication (`mfa`), organizations (`organizations`)."""
