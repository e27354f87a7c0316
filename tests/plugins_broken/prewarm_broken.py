"""A provider plugin that cannot be imported: prewarm must report it and carry on."""

raise ImportError("simulated broken plugin")
