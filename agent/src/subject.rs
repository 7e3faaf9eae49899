//! [`Subject`]: what a signal reports and a decision acts on — an address, a network or a
//! domain. One type for the whole pipeline, so that the swarm, the decision stage and the
//! enforcement backends cannot disagree on what "the same attacker" means.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// An address, a network (CIDR) or a domain name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Ip(IpAddr),
    /// A network with host bits cleared; a /32 or /128 is normalised to [`Subject::Ip`].
    Net(IpNet),
    /// A lowercase domain name without the trailing dot; a decision on it covers its
    /// subdomains.
    Domain(Domain),
}

/// A validated, normalised domain name (lowercase, no trailing dot, at least two labels).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` is this domain or one of its subdomains.
    pub fn covers(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        name.eq_ignore_ascii_case(&self.0)
            || (name.len() > self.0.len()
                && name.as_bytes()[name.len() - self.0.len() - 1] == b'.'
                && name[name.len() - self.0.len()..].eq_ignore_ascii_case(&self.0))
    }
}

/// Why text is not a subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not an IP address, a CIDR network or a domain name")]
pub struct InvalidSubject(pub String);

impl Subject {
    /// Whether `ip` falls under this subject (never, for a domain).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Subject::Ip(own) => *own == ip,
            Subject::Net(net) => net.contains(&ip),
            Subject::Domain(_) => false,
        }
    }

    /// Whether this subject is an address or a network (what nftables can block).
    pub fn is_network(&self) -> bool {
        !matches!(self, Subject::Domain(_))
    }
}

impl FromStr for Subject {
    type Err = InvalidSubject;

    fn from_str(text: &str) -> Result<Subject, InvalidSubject> {
        let invalid = || InvalidSubject(text.to_owned());
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Subject::Ip(ip));
        }
        if text.contains('/') {
            let net: IpNet = text.parse().map_err(|_| invalid())?;
            let net = net.trunc();
            return Ok(if net.prefix_len() == net.max_prefix_len() {
                Subject::Ip(net.addr())
            } else {
                Subject::Net(net)
            });
        }
        let name = text.trim_end_matches('.').to_ascii_lowercase();
        let labels_ok = name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        // A lone label ("localhost", "com") is too broad to be a subject.
        if name.len() > 253 || !labels_ok || !name.contains('.') {
            return Err(invalid());
        }
        // All-numeric dotted names are malformed addresses, not domains.
        if name
            .split('.')
            .all(|label| label.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid());
        }
        Ok(Subject::Domain(Domain(name)))
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Ip(ip) => write!(f, "{ip}"),
            Subject::Net(net) => write!(f, "{net}"),
            Subject::Domain(domain) => f.write_str(&domain.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(text: &str) -> Subject {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_networks_and_domains_round_trip() {
        for text in [
            "192.0.2.7",
            "2001:db8::1",
            "198.51.100.0/24",
            "2001:db8::/32",
            "evil.example",
        ] {
            assert_eq!(subject(text).to_string(), text);
        }
    }

    #[test]
    fn networks_are_normalised() {
        assert_eq!(subject("198.51.100.77/24").to_string(), "198.51.100.0/24");
        assert_eq!(
            subject("192.0.2.7/32"),
            Subject::Ip("192.0.2.7".parse().unwrap())
        );
        assert_eq!(subject("Evil.Example."), subject("evil.example"));
    }

    #[test]
    fn nonsense_is_refused() {
        for text in [
            "",
            "1.2.3",
            "300.1.1.1",
            "10.0.0.0/33",
            "localhost",
            "-bad.example",
            "a..b",
            "x y.example",
        ] {
            assert!(text.parse::<Subject>().is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn containment() {
        let net = subject("198.51.100.0/24");
        assert!(net.contains("198.51.100.9".parse().unwrap()));
        assert!(!net.contains("198.51.101.9".parse().unwrap()));
        assert!(subject("192.0.2.7").contains("192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn a_domain_covers_its_subdomains_only() {
        let Subject::Domain(domain) = subject("evil.example") else {
            unreachable!()
        };
        assert!(domain.covers("evil.example"));
        assert!(domain.covers("a.b.EVIL.example."));
        assert!(!domain.covers("notevil.example"));
        assert!(!domain.covers("example"));
    }
}
