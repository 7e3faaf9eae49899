//! The same as `member_light`, verifying with `ssi` instead (what linking `ssi` into the
//! agent would cost): `cargo build --release -p swarmguard-identity --no-default-features
//! --features ssi --example member_ssi`.

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        eprintln!("usage: member_ssi CREDENTIAL_FILE");
        std::process::exit(64);
    };
    let jwt = std::fs::read_to_string(&file).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = swarmguard_identity::vc::Engine::new(None);
    let value = serde_json::Value::String(jwt.trim().to_owned());
    match runtime.block_on(engine.verify_credential(&value, chrono::Utc::now())) {
        Ok(report) if report.verified() => println!("verified"),
        Ok(report) => println!("refused: {}", report.errors.join("; ")),
        Err(err) => println!("refused: {err}"),
    }
}
