// The daemon's configuration (TOML); see DaemonConfig below.
