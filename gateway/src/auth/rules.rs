//! Who may log in how: pg_hba.conf's idea, small. Rules are tried in order;
//! the first whose users, client addresses and TLS condition match decides
//! the method (trust, password, scram, cert or reject). No match: refused,
//! as PostgreSQL refuses a connection no pg_hba.conf line admits.

use std::net::IpAddr;

pub use crate::config::{Method, Rule, TlsCondition};

/// An address block, parsed.
#[derive(Debug, Clone, Copy)]
struct Block {
    network: IpAddr,
    prefix: u8,
}

impl Block {
    fn parse(s: &str) -> Option<Self> {
        let (address, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self {
            network: address,
            prefix,
        })
    }

    fn contains(&self, address: IpAddr) -> bool {
        let bits = |a: IpAddr| match a {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        let ((net, width), (addr, addr_width)) = (bits(self.network), bits(address));
        if width != addr_width {
            return false;
        }
        let host_bits = u32::from(width - self.prefix);
        net.checked_shr(host_bits).unwrap_or(0) == addr.checked_shr(host_bits).unwrap_or(0)
    }
}

/// The rules, checked and ready to match.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<(Rule, Vec<Block>)>,
    /// `tls = required`: no rule matches a plain connection.
    tls_required: bool,
}

/// What the rules decided for one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Authenticate(Method),
    /// Refused before any exchange, with PostgreSQL's wording.
    Refuse(String),
}

impl Rules {
    /// Checks every rule; errors name the rule (1-based) and the value.
    pub fn new(rules: &[Rule]) -> anyhow::Result<Self> {
        let mut checked = Vec::with_capacity(rules.len());
        for (n, rule) in rules.iter().enumerate() {
            let blocks = rule
                .addresses
                .iter()
                .map(|a| {
                    Block::parse(a).ok_or_else(|| {
                        anyhow::anyhow!("rules[{}]: {a:?} is not an address or block", n + 1)
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            anyhow::ensure!(
                rule.method != Method::Cert || rule.tls != TlsCondition::Forbidden,
                "rules[{}]: cert needs TLS",
                n + 1
            );
            checked.push((rule.clone(), blocks));
        }
        Ok(Self {
            rules: checked,
            tls_required: false,
        })
    }

    /// One rule for everyone: what `auth = trust|password` means.
    pub fn everyone(method: Method) -> Self {
        Self {
            rules: vec![(
                Rule {
                    users: Vec::new(),
                    addresses: Vec::new(),
                    tls: TlsCondition::Any,
                    method,
                    force_trust: false,
                },
                Vec::new(),
            )],
            tls_required: false,
        }
    }

    /// With `required`, plain connections match no rule (as when every
    /// pg_hba.conf line is `hostssl`).
    pub fn requiring_tls(mut self, required: bool) -> Self {
        self.tls_required = required;
        self
    }

    pub fn decide(&self, user: &str, database: &str, client: IpAddr, tls: bool) -> Decision {
        let refused = |what: &str| {
            Decision::Refuse(format!(
                "{what} for host \"{client}\", user \"{user}\", database \"{database}\", {}",
                if tls {
                    "SSL encryption"
                } else {
                    "no encryption"
                }
            ))
        };
        let matches = |(rule, blocks): &&(Rule, Vec<Block>)| {
            (rule.users.is_empty() || rule.users.iter().any(|u| u == user))
                && (blocks.is_empty() || blocks.iter().any(|b| b.contains(client)))
                && match rule.tls {
                    TlsCondition::Any => true,
                    TlsCondition::Required => tls,
                    TlsCondition::Forbidden => !tls,
                }
        };
        let rule = if self.tls_required && !tls {
            None
        } else {
            self.rules.iter().find(matches)
        };
        match rule {
            None => refused("no pg_hba.conf entry"),
            Some((rule, _)) => match rule.method {
                Method::Reject => refused("pg_hba.conf rejects connection"),
                Method::Trust if !client.is_loopback() && !rule.force_trust => {
                    refused("trust authentication is refused off loopback (set force_trust)")
                }
                Method::Cert if !tls => refused("certificate authentication needs TLS"),
                method => Decision::Authenticate(method),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(users: &[&str], addresses: &[&str], tls: TlsCondition, method: Method) -> Rule {
        Rule {
            users: users.iter().map(|s| s.to_string()).collect(),
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            tls,
            method,
            force_trust: false,
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = Rules::new(&[
            rule(&["mallory"], &[], TlsCondition::Any, Method::Reject),
            rule(&[], &["10.1.0.0/16"], TlsCondition::Required, Method::Cert),
            rule(
                &[],
                &["10.0.0.0/8", "::1"],
                TlsCondition::Any,
                Method::Scram,
            ),
            rule(
                &["ops"],
                &["127.0.0.1"],
                TlsCondition::Forbidden,
                Method::Trust,
            ),
        ])
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let decide = |user, client, tls| rules.decide(user, "db", ip(client), tls);
        assert_eq!(
            decide("alice", "10.1.2.3", true),
            Decision::Authenticate(Method::Cert)
        );
        assert_eq!(
            decide("alice", "10.1.2.3", false),
            Decision::Authenticate(Method::Scram),
            "hostssl does not match a plain connection; the next rule does"
        );
        assert_eq!(
            decide("alice", "::ffff:10.9.9.9", false),
            Decision::Authenticate(Method::Scram),
            "an IPv4-mapped address matches its IPv4 block"
        );
        assert!(matches!(
            decide("mallory", "10.0.0.1", false),
            Decision::Refuse(m) if m.starts_with("pg_hba.conf rejects connection for host \"10.0.0.1\", user \"mallory\"")
        ));
        assert_eq!(
            decide("ops", "127.0.0.1", false),
            Decision::Authenticate(Method::Trust)
        );
        assert!(matches!(
            decide("ops", "127.0.0.1", true),
            Decision::Refuse(m) if m == "no pg_hba.conf entry for host \"127.0.0.1\", user \"ops\", database \"db\", SSL encryption"
        ));
        assert!(matches!(
            decide("alice", "192.0.2.1", false),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn required_tls_lets_no_rule_match_a_plain_connection() {
        let rules = Rules::everyone(Method::Password).requiring_tls(true);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            rules.decide("alice", "db", ip, false),
            Decision::Refuse(
                "no pg_hba.conf entry for host \"127.0.0.1\", user \"alice\", database \"db\", no encryption".into()
            )
        );
        assert_eq!(
            rules.decide("alice", "db", ip, true),
            Decision::Authenticate(Method::Password)
        );
    }

    #[test]
    fn trust_off_loopback_needs_force_trust() {
        let mut open = rule(&[], &[], TlsCondition::Any, Method::Trust);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let refused = Rules::new(&[open.clone()])
            .unwrap()
            .decide("a", "d", ip, false);
        assert!(matches!(refused, Decision::Refuse(m) if m.contains("force_trust")));
        open.force_trust = true;
        let allowed = Rules::new(&[open]).unwrap().decide("a", "d", ip, false);
        assert_eq!(allowed, Decision::Authenticate(Method::Trust));
    }

    #[test]
    fn blocks_match_by_prefix() {
        let block = |s| Block::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(block("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!block("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(block("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(block("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!block("2001:db8::/32").contains(ip("10.0.0.1")));
        assert!(block("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!block("192.0.2.7").contains(ip("192.0.2.8")));
        for bad in ["10.0.0.0/33", "host.example", "10.0.0.0/x", ""] {
            assert!(Block::parse(bad).is_none(), "{bad}");
        }
    }
}
