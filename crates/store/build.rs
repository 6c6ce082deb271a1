// `sqlx::migrate!` embeds the migrations at compile time; rebuild when one is added or changed
// (sqlx's documented recipe — without it a new migration file is not picked up by an
// incremental build).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
