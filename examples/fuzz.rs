//! The long fuzz run: `cargo run --release --example fuzz -- [INPUTS] [TARGET] [SEED]`
//! runs every target (or one) on INPUTS inputs each (default 10,000,000)
//! and prints how many ran and how fast. A panic prints the seed and input.

use ddlgate::fuzz::{run, Env, TARGETS};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let inputs: u64 = args
        .first()
        .map_or(10_000_000, |a| a.parse().expect("INPUTS is a number"));
    let only = args.get(1).filter(|t| *t != "all");
    let seed: u64 = args
        .get(2)
        .map_or(1, |a| a.parse().expect("SEED is a number"));
    let mut env = Env::new();
    println!(
        "{:<10} {:>12} {:>10} {:>12}",
        "target", "inputs", "seconds", "inputs/s"
    );
    for t in TARGETS.iter().filter(|t| only.is_none_or(|o| o == t.name)) {
        let s = run(t, inputs, seed, &mut env);
        let secs = s.elapsed.as_secs_f64();
        println!(
            "{:<10} {:>12} {:>10.1} {:>12.0}",
            s.target,
            s.inputs,
            secs,
            s.inputs as f64 / secs
        );
    }
}
