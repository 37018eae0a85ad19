fn main() {
    println!("capwise");
}
