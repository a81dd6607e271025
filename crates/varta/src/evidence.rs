//! `varta evidence verify FILE.zip`: checks an export package
//! ([`varta_store::evidence::verify_package`]) against the signing node's public key
//! as registered in PostgreSQL (DATABASE_URL), or a key given by hand.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use varta_store::evidence::{package_manifest, verify_package, RegisteredKey};

/// Evidence commands.
#[derive(clap::Subcommand)]
pub enum EvidenceCmd {
    /// Check an export package (`GET /api/v1/events/{id}/export`): the manifest's
    /// signature with the node's registered public key, and every file against the
    /// SHA-256 in the manifest. Prints each check; names every file that does not
    /// match and exits with status 1 if any does.
    Verify {
        /// The ZIP file.
        file: PathBuf,
        /// The signing node's public key (base64 of 32 bytes, as `node_keys`
        /// holds it), for checking without the database. Without it the key is
        /// read from PostgreSQL (DATABASE_URL) by the manifest's key id.
        #[arg(long)]
        public_key: Option<String>,
        /// With --public-key: the node it belongs to.
        #[arg(long, requires = "public_key")]
        node: Option<String>,
    },
}

/// Runs an evidence command.
pub async fn run(cmd: EvidenceCmd) -> Result<ExitCode> {
    let EvidenceCmd::Verify { file, public_key, node } = cmd;
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    // The key id is in the manifest: peek at it first, then fetch that key.
    let key_id = package_manifest(std::io::Cursor::new(&bytes))?.map(|m| (m.key_id, m.node));
    let key = match (public_key, &key_id) {
        (Some(k), Some((_, signer))) => {
            Some(RegisteredKey { node: node.unwrap_or_else(|| signer.clone()), public_key: k, registered_at: None })
        }
        (None, Some((id, _))) => {
            let store = varta_store::Store::connect(&crate::database_url()?).await?;
            store.node_key(id).await?
        }
        (_, None) => None,
    };
    let v = verify_package(std::io::Cursor::new(&bytes), |_| key)?;
    for line in &v.passed {
        println!("ok      {line}");
    }
    for (file, why) in &v.failed {
        println!("FAILED  {file}: {why}");
    }
    match (&v.manifest, v.failed.is_empty()) {
        (Some(m), true) => {
            println!(
                "evidence intact: event {} on camera {}, signed by node {} with key {}",
                m.event_id, m.camera, m.node, m.key_id
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            let names: Vec<&str> = v.failed.iter().map(|(f, _)| f.as_str()).collect();
            println!("evidence NOT intact: {}", names.join(", "));
            Ok(ExitCode::FAILURE)
        }
    }
}
