//! Plain in, TLS out: every connection to `--listen` is relayed over TLS to `--upstream`,
//! whose certificate must verify against the webpki roots or `--upstream-ca` and match its
//! host name.
//!
//! ```text
//! cargo run --release --example tls_upstream -- --listen 127.0.0.1:9080 --upstream example.com:443
//! curl -H 'Host: example.com' http://127.0.0.1:9080/
//! ```

use rama::{Address, proxy, tls};
use rama_examples::{Args, DRAIN_TIMEOUT, Failure, IDLE_TIMEOUT, bind, init_tracing};

const USAGE: &str = "\
tls_upstream: relay every plain TCP connection over TLS to one upstream

usage: tls_upstream --upstream HOST:PORT [--listen ADDR] [--upstream-ca FILE]
                    [--server-name NAME] [--alpn LIST] [--threads N]
                    [--client-cert FILE --client-key FILE]

  --listen ADDR          where to accept plain connections (default 127.0.0.1:9080)
  --upstream HOST:PORT   the TLS upstream; HOST is also the SNI and the name its certificate
                         must match
  --upstream-ca FILE     trust this CA (PEM) instead of the webpki roots
  --server-name NAME     send and verify NAME instead of HOST (when HOST is an address)
  --alpn LIST            protocols to offer, comma-separated (default: none)
  --client-cert FILE, --client-key FILE
                         present this certificate chain and key (PEM) to an upstream that
                         asks for one (mutual TLS)
  --threads N            servers, one per thread (default: one per core)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    init_tracing();
    let args = Args::parse(USAGE, &[]);
    let listen: String = args.get("listen", "127.0.0.1:9080");
    let upstream: Address = args.required("upstream");
    let ca: String = args.get("upstream-ca", "");
    let server_name: String = args.get("server-name", "");
    let alpn: String = args.get("alpn", "");
    let threads: usize = args.get("threads", "0");
    let client_cert: String = args.get("client-cert", "");
    let client_key: String = args.get("client-key", "");

    let mut builder = tls::Connector::builder();
    builder = match ca.as_str() {
        "" => builder.webpki_roots(),
        ca => builder.ca_pem_file(ca)?,
    };
    if !alpn.is_empty() {
        builder = builder.alpn(alpn.split(','));
    }
    builder = match (client_cert.is_empty(), client_key.is_empty()) {
        (true, true) => builder,
        (false, false) => builder.client_cert_pem_files(&client_cert, &client_key)?,
        _ => return Err("--client-cert and --client-key go together".into()),
    };
    let mut connector = builder.build()?;
    if !server_name.is_empty() {
        connector = connector.server_name(&server_name)?;
    }

    let servers = bind(&listen, threads, |addr| {
        vec![format!(
            "relaying over TLS to {upstream}; try: curl http://{addr}/ (if the upstream speaks HTTP)"
        )]
    })?;
    servers
        .run(move |server| {
            proxy! { server => target(upstream.clone()).tls(connector.clone()) }
                .idle_timeout(IDLE_TIMEOUT)
                .drain_timeout(DRAIN_TIMEOUT)
        })
        .await?;
    Ok(())
}
