"""The recording format shared by every component: one long table, one schema, one metadata key."""
