//! A TLS-terminating reverse proxy: TLS in on `--listen`, plain out to `--upstream`, one
//! server per core. Without `--cert`/`--key` it serves a development certificate for
//! `localhost` and `127.0.0.1`, whose CA it writes to a temporary file (logged).
//!
//! ```text
//! python3 -m http.server 8000 &
//! cargo run --release --example tls_reverse_proxy -- --listen 127.0.0.1:8443 --upstream 127.0.0.1:8000
//! curl --cacert /tmp/rama-dev-ca-PID.pem https://localhost:8443/
//! ```

use rama::{Address, proxy, tls};
use rama_examples::{Args, DRAIN_TIMEOUT, Failure, IDLE_TIMEOUT, bind, init_tracing};
use std::time::Duration;

const USAGE: &str = "\
tls_reverse_proxy: terminate TLS and relay the plain bytes to one upstream

usage: tls_reverse_proxy --upstream ADDR [--listen ADDR] [--cert FILE --key FILE]
                         [--client-ca FILE] [--alpn LIST] [--handshake-timeout SECS]
                         [--threads N] [--no-resumption]

  --listen ADDR              where to accept TLS (default 127.0.0.1:8443)
  --upstream ADDR            where to relay the plain bytes (host:port)
  --cert FILE, --key FILE    certificate chain and key, PEM (default: a development certificate
                             for localhost and 127.0.0.1)
  --client-ca FILE           require client certificates signed by this CA (mutual TLS)
  --alpn LIST                protocols to offer, comma-separated (default: none; offer only
                             what the upstream speaks)
  --handshake-timeout SECS   drop clients that have not finished the handshake (default 10)
  --threads N                servers, one per thread (default: one per core)
  --no-resumption            no session tickets or cache: every client does a full handshake
                             (with --cert and --key)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    init_tracing();
    let args = Args::parse(USAGE, &["no-resumption"]);
    let listen: String = args.get("listen", "127.0.0.1:8443");
    let upstream: Address = args.required("upstream");
    let cert: String = args.get("cert", "");
    let key: String = args.get("key", "");
    let client_ca: String = args.get("client-ca", "");
    let alpn: String = args.get("alpn", "");
    let handshake: u64 = args.get("handshake-timeout", "10");
    let threads: usize = args.get("threads", "0");
    let resumption = !args.flag("no-resumption");

    let acceptor = match (
        cert.is_empty(),
        key.is_empty(),
        client_ca.is_empty(),
        alpn.is_empty() && resumption,
    ) {
        (true, true, true, true) => tls::Acceptor::dev()?,
        (true, true, ..) => {
            return Err("--client-ca, --alpn and --no-resumption need --cert and --key".into());
        }
        (false, false, ..) => {
            let mut builder = tls::Acceptor::builder().cert_pem_files(&cert, &key)?;
            if !client_ca.is_empty() {
                builder = builder.client_ca_pem_file(&client_ca)?;
            }
            if !alpn.is_empty() {
                builder = builder.alpn(alpn.split(','));
            }
            if !resumption {
                builder = builder.without_resumption();
            }
            builder.build()?
        }
        _ => return Err("--cert and --key go together".into()),
    };
    let acceptor = acceptor.handshake_timeout(Duration::from_secs(handshake));

    let servers = bind(&listen, threads, |addr| {
        vec![format!(
            "relaying to {upstream}; try: curl --cacert CA.pem https://localhost:{}/",
            addr.port()
        )]
    })?;
    servers
        .run(move |server| {
            proxy! { server => tls(acceptor.clone()) => target(upstream.clone()) }
                .idle_timeout(IDLE_TIMEOUT)
                .drain_timeout(DRAIN_TIMEOUT)
        })
        .await?;
    Ok(())
}
