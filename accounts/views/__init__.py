"""Browser pages of the accounts app, beside allauth's: account deletion (`deletion`), sign-up
(`account`), the second factor's e-mailed code (`mfa`) and invitations to organizations
(`organizations`)."""
