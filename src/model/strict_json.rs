//! JSON objects only: serde's derived readers of a struct also take an array of its
//! fields in order, a form no file of ours is ever written in, and one that would let
//! `["Cars", [...]]` pass for a role. Every file format reads its structs through
//! [`Object`].

use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A `T` read from a JSON object (an array is refused).
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Fields(PhantomData)).map(Object)
    }
}

/// Reads a `T` from a JSON object.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Object::<T>::deserialize(d).map(|o| o.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Role {
        name: String,
        members: Vec<String>,
    }

    #[test]
    fn an_object_reads_and_an_array_of_the_same_fields_does_not() {
        let Object(r) = serde_json::from_str::<Object<Role>>(r#"{"name":"Cars","members":["a.b"]}"#).unwrap();
        assert_eq!(r, Role { name: "Cars".into(), members: vec!["a.b".into()] });
        assert!(serde_json::from_str::<Role>(r#"["Cars",["a.b"]]"#).is_ok(), "what serde alone accepts");
        let e = serde_json::from_str::<Object<Role>>(r#"["Cars",["a.b"]]"#).err().unwrap();
        assert!(e.to_string().contains("expected an object"), "{e}");
    }
}
