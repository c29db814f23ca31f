//! The few WASI interfaces a processor may import, as the host defines them.
//!
//! A `wasm32-wasip2` guest built with Rust's standard library imports `wasi:cli/*` and
//! `wasi:io/*` even when it does no I/O (its startup code and panic messages need them). Roost
//! provides those with nothing behind them: an empty environment and argument list, no stdin,
//! stdout and stderr into Roost's log (the last stderr line also goes into the reason of a failed
//! message, so a panic message reaches the dead-letter store), `exit` as a failure, and random
//! bytes. Files, sockets and clocks are never linked: a module importing them is refused at
//! upload (see [`check_imports`]).

use rand::RngCore;
use wasmtime::component::{ComponentType, Lift, Linker, Lower, Resource, ResourceType};

use super::state::HostState;

/// The WASI version the host's definitions carry; any 0.2.x import links to them.
const WASI: &str = "0.2.6";

/// Why an import is refused, or `None` when the host provides it.
pub(crate) fn refused_import(name: &str) -> Option<String> {
    let (package, _) = name.split_once('@').unwrap_or((name, ""));
    let family = package.split('/').next().unwrap_or(package);
    match family {
        "roost:processor" => None,
        "wasi:cli" | "wasi:io" | "wasi:random" if name.contains("@0.2.") => None,
        "wasi:cli" | "wasi:io" | "wasi:random" => {
            Some(format!("imports `{name}`: only WASI 0.2.x is provided"))
        }
        "wasi:filesystem" => Some(format!("imports `{name}`: processors get no file system")),
        "wasi:sockets" | "wasi:http" => Some(format!("imports `{name}`: processors get no network")),
        "wasi:clocks" => {
            Some(format!("imports `{name}`: processors get no clock (use the message's received-at time)"))
        }
        _ => Some(format!(
            "imports `{name}`, which Roost does not provide (a processor may import only \
             roost:processor/log and WASI's cli, io and random interfaces)"
        )),
    }
}

/// stdout (1) and stderr (2).
pub(crate) struct OutputStream;
pub(crate) struct InputStream;
pub(crate) struct IoError;
pub(crate) struct Pollable;

#[derive(ComponentType, Lift, Lower)]
#[component(variant)]
enum StreamError {
    #[component(name = "last-operation-failed")]
    LastOperationFailed(Resource<IoError>),
    #[component(name = "closed")]
    Closed,
}

type Wasm<T> = wasmtime::Result<T>;

/// Defines the provided WASI interfaces in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Wasm<()> {
    let mut error = linker.instance(&format!("wasi:io/error@{WASI}"))?;
    error.resource("error", ResourceType::host::<IoError>(), |_, _| Ok(()))?;
    error.func_wrap("[method]error.to-debug-string", |_, (_,): (Resource<IoError>,)| {
        Ok(("error".to_string(),))
    })?;

    // Host streams never block: every pollable is ready.
    let mut poll = linker.instance(&format!("wasi:io/poll@{WASI}"))?;
    poll.resource("pollable", ResourceType::host::<Pollable>(), |_, _| Ok(()))?;
    poll.func_wrap("[method]pollable.ready", |_, (_,): (Resource<Pollable>,)| Ok((true,)))?;
    poll.func_wrap("[method]pollable.block", |_, (_,): (Resource<Pollable>,)| Ok(()))?;
    poll.func_wrap("poll", |_, (list,): (Vec<Resource<Pollable>>,)| {
        Ok(((0..list.len() as u32).collect::<Vec<u32>>(),))
    })?;

    let mut streams = linker.instance(&format!("wasi:io/streams@{WASI}"))?;
    streams.resource("pollable", ResourceType::host::<Pollable>(), |_, _| Ok(()))?;
    for name in ["[method]output-stream.subscribe", "[method]input-stream.subscribe"] {
        streams
            .func_wrap(name, |_, (_,): (Resource<OutputStream>,)| Ok((Resource::<Pollable>::new_own(0),)))?;
    }
    streams.resource("output-stream", ResourceType::host::<OutputStream>(), |_, _| Ok(()))?;
    streams.resource("input-stream", ResourceType::host::<InputStream>(), |_, _| Ok(()))?;
    // Types an interface `use`s from another are exported by it too, and must be the same type.
    streams.resource("error", ResourceType::host::<IoError>(), |_, _| Ok(()))?;
    type Unit = Result<(), StreamError>;
    streams.func_wrap("[method]output-stream.check-write", |_, (_,): (Resource<OutputStream>,)| {
        Ok((Ok::<u64, StreamError>(4096),))
    })?;
    for name in ["[method]output-stream.write", "[method]output-stream.blocking-write-and-flush"] {
        streams.func_wrap(name, |mut store, (stream, bytes): (Resource<OutputStream>, Vec<u8>)| {
            store.data_mut().output(stream.rep(), &bytes);
            Ok((Ok::<(), StreamError>(()),))
        })?;
    }
    for name in ["[method]output-stream.flush", "[method]output-stream.blocking-flush"] {
        streams.func_wrap(name, |_, (_,): (Resource<OutputStream>,)| Ok((Unit::Ok(()),)))?;
    }
    for name in ["[method]input-stream.read", "[method]input-stream.blocking-read"] {
        streams.func_wrap(name, |_, (_, _): (Resource<InputStream>, u64)| {
            Ok((Err::<Vec<u8>, StreamError>(StreamError::Closed),))
        })?;
    }

    let mut stdin = linker.instance(&format!("wasi:cli/stdin@{WASI}"))?;
    stdin.resource("input-stream", ResourceType::host::<InputStream>(), |_, _| Ok(()))?;
    stdin.func_wrap("get-stdin", |_, ()| Ok((Resource::<InputStream>::new_own(0),)))?;
    let mut stdout = linker.instance(&format!("wasi:cli/stdout@{WASI}"))?;
    stdout.resource("output-stream", ResourceType::host::<OutputStream>(), |_, _| Ok(()))?;
    stdout.func_wrap("get-stdout", |_, ()| Ok((Resource::<OutputStream>::new_own(1),)))?;
    let mut stderr = linker.instance(&format!("wasi:cli/stderr@{WASI}"))?;
    stderr.resource("output-stream", ResourceType::host::<OutputStream>(), |_, _| Ok(()))?;
    stderr.func_wrap("get-stderr", |_, ()| Ok((Resource::<OutputStream>::new_own(2),)))?;

    let mut env = linker.instance(&format!("wasi:cli/environment@{WASI}"))?;
    env.func_wrap("get-environment", |_, ()| Ok((Vec::<(String, String)>::new(),)))?;
    env.func_wrap("get-arguments", |_, ()| Ok((Vec::<String>::new(),)))?;
    env.func_wrap("initial-cwd", |_, ()| Ok((None::<String>,)))?;

    let mut exit = linker.instance(&format!("wasi:cli/exit@{WASI}"))?;
    exit.func_wrap("exit", |_, (status,): (Result<(), ()>,)| -> Wasm<()> {
        Err(wasmtime::format_err!(
            "the module called exit ({})",
            if status.is_ok() { "success" } else { "failure" }
        ))
    })?;

    let mut random = linker.instance(&format!("wasi:random/random@{WASI}"))?;
    random.func_wrap("get-random-bytes", |_, (len,): (u64,)| Ok((random_bytes(len)?,)))?;
    random.func_wrap("get-random-u64", |_, ()| Ok((rand::rng().next_u64(),)))?;
    let mut insecure = linker.instance(&format!("wasi:random/insecure@{WASI}"))?;
    insecure.func_wrap("get-insecure-random-bytes", |_, (len,): (u64,)| Ok((random_bytes(len)?,)))?;
    insecure.func_wrap("get-insecure-random-u64", |_, ()| Ok((rand::rng().next_u64(),)))?;
    let mut seed = linker.instance(&format!("wasi:random/insecure-seed@{WASI}"))?;
    seed.func_wrap("insecure-seed", |_, ()| {
        let mut rng = rand::rng();
        Ok(((rng.next_u64(), rng.next_u64()),))
    })?;
    Ok(())
}

fn random_bytes(len: u64) -> Wasm<Vec<u8>> {
    if len > 1 << 20 {
        return Err(wasmtime::format_err!("asked for {len} random bytes (at most 1 MiB per call)"));
    }
    let mut bytes = vec![0; len as usize];
    rand::rng().fill_bytes(&mut bytes);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::refused_import;

    #[test]
    fn imports_are_sorted_into_provided_and_refused() {
        for ok in [
            "roost:processor/log@0.1.0",
            "roost:processor/types@0.1.0",
            "wasi:cli/environment@0.2.0",
            "wasi:io/streams@0.2.6",
            "wasi:random/random@0.2.3",
        ] {
            assert_eq!(refused_import(ok), None, "{ok}");
        }
        for (bad, says) in [
            ("wasi:filesystem/preopens@0.2.0", "no file system"),
            ("wasi:sockets/tcp@0.2.0", "no network"),
            ("wasi:clocks/wall-clock@0.2.0", "no clock"),
            ("wasi:cli/environment@0.3.0", "only WASI 0.2.x"),
            ("acme:evil/thing", "does not provide"),
        ] {
            let why = refused_import(bad).expect(bad);
            assert!(why.contains(bad) && why.contains(says), "{why}");
        }
    }
}
