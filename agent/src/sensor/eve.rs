//! The Suricata `eve.json` sensor (written later in this branch).
