//! A swarmd-like program that verifies a membership credential with the light verifier
//! only (no `ssi`), to measure what the agent pays in binary size and build time:
//! `cargo build --release -p swarmguard-identity --no-default-features --example member_light`.

use std::time::{Duration, SystemTime};

use swarmguard_identity::did::Did;
use swarmguard_identity::membership::{MembershipVerifier, StatusListCache};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(issuer), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: member_light ISSUER_DID CREDENTIAL_FILE");
        std::process::exit(64);
    };
    let mut verifier = MembershipVerifier::new(StatusListCache::new(Duration::from_secs(300), 16));
    let issuer = Did::parse(&issuer).unwrap_or_else(|err| {
        eprintln!("{err}");
        std::process::exit(64)
    });
    if let Err(err) = verifier.trust_did_key(&issuer) {
        eprintln!("{err}");
        std::process::exit(64);
    }
    let jwt = std::fs::read_to_string(&file).unwrap_or_default();
    match verifier.verify(jwt.trim(), SystemTime::now()) {
        Ok(member) => println!("member {} ({})", member.did, member.role),
        Err(err) => println!("refused: {err}"),
    }
}
