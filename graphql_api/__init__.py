"""The GraphQL face (Strawberry schema) and the application assembly: app, lifespan, CLI."""
