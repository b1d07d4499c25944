//! Demix VST3/CLAP plugin (built out in its own issue).
