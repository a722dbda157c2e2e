"""Forms of the accounts app: allauth's account forms with our rules (`account`, ACCOUNT_FORMS), its
second-factor forms (`mfa`, MFA_FORMS), and the admin's user forms (`users`)."""
