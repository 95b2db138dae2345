//! A TCP forwarder (layer-4 reverse proxy): every connection to `--listen` is relayed to
//! `--upstream`, one server per core.
//!
//! ```text
//! cargo run --release --example tcp_forward -- --listen 127.0.0.1:9000 --upstream 127.0.0.1:5201
//! ```

use rama::{Address, Target, proxy};
use rama_examples::{Args, Failure, bind, init_tracing};
use std::time::Duration;

const USAGE: &str = "\
tcp_forward: relay every TCP connection to one upstream

usage: tcp_forward --upstream ADDR [--listen ADDR] [--threads N] [--relay splice|copy]
                   [--idle-timeout SECS] [--drain-timeout SECS] [--hand-built]

  --listen ADDR          where to accept connections (default 127.0.0.1:9000)
  --upstream ADDR        where to relay them (host:port)
  --threads N            servers, one per thread (default: one per core)
  --relay splice|copy    zero-copy splice(2) or a buffered copy (default splice on Linux)
  --hand-built           serve the stack built by hand instead of by proxy! (for bench/tcp.sh,
                         which checks the two run alike)
  --idle-timeout SECS    close connections idle that long (default 300, 0 = never)
  --drain-timeout SECS   on SIGINT/SIGTERM, wait that long for connections (default 30)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Failure> {
    init_tracing();
    let args = Args::parse(USAGE, &["hand-built"]);
    let listen: String = args.get("listen", "127.0.0.1:9000");
    let upstream: Address = args.required("upstream");
    let idle: u64 = args.get("idle-timeout", "300");
    let drain: u64 = args.get("drain-timeout", "30");
    let threads: usize = args.get("threads", "0");
    let hand_built = args.flag("hand-built");
    let splice = match args.get::<String>("relay", "splice").as_str() {
        "splice" => true,
        "copy" => false,
        other => return Err(format!("--relay {other}: expected splice or copy").into()),
    };

    let servers = bind(&listen, threads, |addr| {
        vec![format!(
            "relaying to {upstream}; try: curl http://{addr}/ (if the upstream speaks HTTP)"
        )]
    })?;
    servers
        .run(move |server| {
            let dial = Target::fixed(upstream.clone()).splice(splice);
            // Both arms have one type: the macro expands to what a person writes by hand.
            let serve = if hand_built {
                server.serve(dial)
            } else {
                proxy! { server => dial }
            };
            let serve = serve.drain_timeout(Duration::from_secs(drain));
            match idle {
                0 => serve,
                secs => serve.idle_timeout(Duration::from_secs(secs)),
            }
        })
        .await?;
    Ok(())
}
