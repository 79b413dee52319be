"""The absl binaries: flags -> RunConfig -> the engine. Flags are defined here and only here."""
