-- Prosody for ground.example, fronted by the zerolink gateway of ground.toml (same folder).
-- Everything listens on 127.0.0.3 only, so that the air pair (127.0.0.2) can run on the
-- same machine. Start it from the repository root with:
--   prosody --config examples/gateway/prosody-ground.cfg.lua -F
-- Written for Prosody 0.12 (Debian 12's package).

-- Paths. Prosody resolves a relative data_path against the current directory, pidfile against
-- data_path, and certificates against the folder of this file. CFG_CONFIGDIR is the folder of
-- the file given to --config (give a path with a folder in it: ./prosody-ground.cfg.lua, not
-- prosody-ground.cfg.lua), so the data lands beside this file wherever Prosody is started from.
local here = CFG_CONFIGDIR or "."
data_path = here .. "/prosody-ground-data"  -- created by `prosodyctl register` (README.md)
pidfile = "prosody.pid"                  -- inside data_path
certificates = "certs"                   -- certs/ground.example.crt and .key, if you add them

-- Prosody refuses to run as root unless told to. This only matters when you try the example
-- as root (a container, a CI machine); remove it for a real deployment.
run_as_root = true

-- Clients on 127.0.0.3:5222; XEP-0114 components (the zerolink gateway) on 127.0.0.3:5347;
-- no server-to-server at all: the other side is reached over the X2X link only.
interfaces = { "127.0.0.3" }
c2s_ports = { 5222 }
component_interfaces = { "127.0.0.3" }
component_ports = { 5347 }
s2s_ports = { }
modules_disabled = { "s2s" }

-- Loopback demo: clients may log in without TLS. Never do this on a real network.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true

authentication = "internal_hashed"
modules_enabled = {
	"roster"; "saslauth"; "disco"; "ping"; "presence"; "version"; "posix";
	-- "tls"; -- STARTTLS for clients: enable it once certs/ground.example.crt and .key exist
	--        -- (README.md). Without a certificate Prosody offers STARTTLS and then fails it.
}
log = { { levels = { min = "info" }, to = "console" } }

VirtualHost "ground.example"

-- The remote domain, reached over the X2X link: the zerolink gateway connects as this
-- component. The secret is the one of [[upstream.component]] domain = "air.example" in
-- ground.toml.
Component "air.example"
	component_secret = "gateway-secret"
