//! A short pass of every fuzz target (`ddlgate::fuzz`) over the parsers a
//! socket reaches; `bench/fuzz.sh` runs the long one.

use ddlgate::fuzz::{run, Env, TARGETS};

#[test]
fn every_fuzz_target_survives_a_short_run() {
    let mut env = Env::new();
    for t in TARGETS {
        // Enough to pass every generator branch many times over.
        let inputs = match t.name {
            "relay" | "auth" | "sql" => 3_000,
            _ => 30_000,
        };
        let s = run(t, inputs, 0x5eed, &mut env);
        assert_eq!(s.inputs, inputs);
    }
}
