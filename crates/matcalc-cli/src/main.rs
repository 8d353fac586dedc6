fn main() { matcalc::hello(); }
