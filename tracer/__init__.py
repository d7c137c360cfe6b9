"""The recorder: the recording session, launching the command, samplers, containers, attach."""
