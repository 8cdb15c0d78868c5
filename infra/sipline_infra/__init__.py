"""The CDK app that deploys sipline: one stack per stage (docs/deployment.md, "The CDK app")."""
