//! The `sealroom` command.

fn main() {
    println!("sealroom: work in progress");
}
