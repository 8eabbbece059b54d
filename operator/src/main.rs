use kube::CustomResourceExt;
use skyvault_operator::crd::SkyVault;

fn main() {
    print!("{}", serde_yaml::to_string(&SkyVault::crd()).unwrap());
}
