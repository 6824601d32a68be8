//! `patron dkim keygen`: a signing key for `[dkim]` and its DNS record.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::UsageError;
use crate::dkim::{self, Algorithm};

#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Write a new private key to --out (mode 0600) and print the DNS TXT record to publish.
    ///
    /// Then set dkim.selector, dkim.domain, dkim.algorithm and dkim.private_key_file.
    /// An existing file is never overwritten.
    Keygen(KeygenArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The selector: the record is published at SELECTOR._domainkey.DOMAIN.
    #[arg(long)]
    pub selector: String,
    /// The signing domain, normally that of the From addresses.
    #[arg(long)]
    pub domain: String,
    /// rsa-sha256 (2048 bits, understood everywhere) or ed25519-sha256.
    #[arg(long, value_enum, default_value = "rsa-sha256")]
    pub algorithm: Algorithm,
    /// Where to write the private key (PKCS#8 PEM); it must not exist yet.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(command: &DkimCommand) -> anyhow::Result<()> {
    let DkimCommand::Keygen(args) = command;
    for (option, name) in [("--selector", &args.selector), ("--domain", &args.domain)] {
        if !dkim::is_dns_name(name) {
            return Err(UsageError(format!("{option} `{name}` is not a DNS name")).into());
        }
    }
    // Made before the file is created, so a failure leaves no empty file.
    let key = dkim::generate(args.algorithm).map_err(|e| anyhow::anyhow!("generating the key: {e}"))?;
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&args.out) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(
                UsageError(format!("{} already exists; patron does not overwrite a key", args.out.display())).into()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", args.out.display())),
    };
    file.write_all(key.private_pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote the private key to {}; publish this DNS record:", args.out.display());
    println!("{}", dkim::dns_record(&args.selector, &args.domain, args.algorithm, &key.public));
    Ok(())
}
