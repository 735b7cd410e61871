//! A test PKI made with the `openssl` command: a CA, a server certificate for
//! 127.0.0.1/localhost, a client certificate, and a server certificate that expired in 2020.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{toml_str, TempDir};

/// A CA, a server certificate for 127.0.0.1/localhost, and a client certificate, made with
/// the `openssl` command.
pub(crate) struct Pki {
    dir: TempDir,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = TempDir::new("pki");
        let ssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("missing openssl ({e}): apt-get install openssl"));
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        ssl(&[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=mcp-bridge test CA"],
        ]
        .concat());
        std::fs::write(dir.path().join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
            .expect("write server.ext");
        std::fs::write(dir.path().join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("write client.ext");
        for who in ["server", "client"] {
            let (key, csr, pem, ext) = (format!("{who}.key"), format!("{who}.csr"), format!("{who}.pem"), format!("{who}.ext"));
            ssl(&[&["req", "-new"], &ec[..], &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN=mcp-bridge test {who}")]]
                .concat());
            let sign = ["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2"];
            ssl(&[&sign[..], &["-out", &pem, "-extfile", &ext]].concat());
        }
        // A server certificate that expired in 2020. OpenSSL 3.0's `x509 -req` cannot backdate,
        // `ca` can (`-startdate`/`-enddate`), with a minimal CA config.
        let write = |f: &str, text: &str| std::fs::write(dir.path().join(f), text).expect("write a CA file");
        write("ca.cnf", "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n");
        write("index.txt", "");
        write("serial", "01\n");
        write("expired.ext", "subjectAltName=IP:127.0.0.3\nextendedKeyUsage=serverAuth\n");
        ssl(&[
            &["req", "-new"],
            &ec[..],
            &["-keyout", "expired.key", "-out", "expired.csr", "-subj", "/CN=mcp-bridge test expired"],
        ]
        .concat());
        ssl(&[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-in",
            "expired.csr",
            "-out",
            "expired.pem",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
            "-extfile",
            "expired.ext",
            "-notext",
        ]);
        Pki { dir }
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub(crate) fn toml(&self, file: &str) -> String {
        toml_str(&self.path(file).display().to_string())
    }
}
