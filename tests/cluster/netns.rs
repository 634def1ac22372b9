//! A network namespace per node, made by the test: every node has two interfaces, one on
//! a "members" bridge (its relay, reached by the test's clients) and one on a "cluster"
//! bridge (its links, and Redis on the host's end). Taking a node's cluster interface down
//! cuts it off from the other nodes and from Redis while its members stay connected to it:
//! a partition of the cluster, on one machine, with real sockets.
//!
//! Needs root and iproute2 (`ip`). When the namespaces cannot be made the test says why and
//! is skipped, unless `SEALROOM_TEST_STRICT=1` (as in CI), where that is a failure. The
//! namespaces, bridges and interfaces are removed when the [`Netns`] is dropped, also when
//! the test fails.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The namespaces and bridges of one test.
pub(crate) struct Netns {
    tag: String,
    /// Third octet of the test's subnets, so runs in parallel do not collide.
    net: u8,
    nodes: u8,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// Namespaces for `nodes` nodes, or `None` (after saying why) when this machine cannot
    /// make them and the run is not strict.
    pub(crate) fn create(nodes: u8) -> anyhow::Result<Option<Self>> {
        // Unique per test in this process (tests run in parallel) and, most likely, across
        // processes: names from the pid and a counter, subnets from both.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let netns = Self {
            tag: format!("{}{n}", pid % 100_000),
            net: u8::try_from((pid + n * 97) % 250).unwrap_or(0) + 1,
            nodes,
        };
        match netns.setup() {
            Ok(()) => Ok(Some(netns)),
            Err(err) => {
                let why = format!(
                    "cannot make network namespaces ({err:#}): the partition test needs root and iproute2 (`ip netns`)"
                );
                if std::env::var("SEALROOM_TEST_STRICT").as_deref() == Ok("1") {
                    bail!("{why}");
                }
                eprintln!("skipped: {why}");
                Ok(None)
            }
        }
    }

    /// The namespace of node `i`.
    pub(crate) fn name(&self, i: u8) -> String {
        format!("sealroom-{}-{i}", self.tag)
    }

    fn bridge(&self, kind: char) -> String {
        format!("srb{}{kind}", self.tag)
    }

    fn host_end(&self, kind: char, i: u8) -> String {
        format!("sr{}{kind}{i}", self.tag)
    }

    /// Node `i`'s address on the members' network.
    pub(crate) fn member_ip(&self, i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.net, i)
    }

    /// Node `i`'s address on the cluster network.
    pub(crate) fn cluster_ip(&self, i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 202, self.net, i)
    }

    /// The host's address on the cluster network (where Redis listens).
    pub(crate) fn host_cluster_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 202, self.net, 254)
    }

    fn setup(&self) -> anyhow::Result<()> {
        // Whatever a crashed run with the same tag left behind goes first.
        self.teardown();
        for (kind, subnet) in [('m', 201), ('c', 202)] {
            let bridge = self.bridge(kind);
            ip(&["link", "add", &bridge, "type", "bridge"])?;
            ip(&[
                "addr",
                "add",
                &format!("10.{subnet}.{}.254/24", self.net),
                "dev",
                &bridge,
            ])?;
            ip(&["link", "set", &bridge, "up"])?;
        }
        for i in 1..=self.nodes {
            let ns = self.name(i);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            for (kind, inner, addr) in [
                ('m', "m0", self.member_ip(i)),
                ('c', "c0", self.cluster_ip(i)),
            ] {
                let outer = self.host_end(kind, i);
                ip(&[
                    "link", "add", &outer, "type", "veth", "peer", "name", inner, "netns", &ns,
                ])?;
                ip(&["link", "set", &outer, "master", &self.bridge(kind), "up"])?;
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    inner,
                ])?;
                ip(&["-n", &ns, "link", "set", inner, "up"])?;
            }
        }
        Ok(())
    }

    /// A command that runs `program` inside node `i`'s namespace.
    pub(crate) fn exec(&self, i: u8, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name(i), program]);
        command.env_remove("RUST_LOG");
        for (key, _) in std::env::vars() {
            if key.starts_with("SEALROOM_") {
                command.env_remove(key);
            }
        }
        command
    }

    /// Cut node `i` off the cluster network (its members' network stays up).
    pub(crate) fn cut(&self, i: u8) -> anyhow::Result<()> {
        ip(&["link", "set", &self.host_end('c', i), "down"])
    }

    /// Connect node `i` to the cluster network again.
    pub(crate) fn heal(&self, i: u8) -> anyhow::Result<()> {
        ip(&["link", "set", &self.host_end('c', i), "up"])
    }

    /// Cut the cluster network between nodes `i` and `j` only (each drops what it would
    /// send the other): both still reach Redis and the remaining nodes.
    pub(crate) fn cut_between(&self, i: u8, j: u8) -> anyhow::Result<()> {
        for (from, to) in [(i, j), (j, i)] {
            let target = format!("{}/32", self.cluster_ip(to));
            ip(&["-n", &self.name(from), "route", "add", "blackhole", &target])?;
        }
        Ok(())
    }

    /// Undo [`Self::cut_between`].
    pub(crate) fn heal_between(&self, i: u8, j: u8) -> anyhow::Result<()> {
        for (from, to) in [(i, j), (j, i)] {
            let target = format!("{}/32", self.cluster_ip(to));
            ip(&["-n", &self.name(from), "route", "del", "blackhole", &target])?;
        }
        Ok(())
    }

    fn teardown(&self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        for i in 1..=self.nodes {
            // Deleting a namespace deletes the veth ends inside it, and so their peers.
            quiet(&["netns", "del", &self.name(i)]);
            for kind in ['m', 'c'] {
                quiet(&["link", "del", &self.host_end(kind, i)]);
            }
        }
        for kind in ['m', 'c'] {
            quiet(&["link", "del", &self.bridge(kind)]);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.teardown();
    }
}
