//! `#[projection(of = Model, crate = "path")]` on a `#[derive(Projection)]` struct.

use syn::{Attribute, LitStr, Path, Type};

use crate::ctxt::Ctxt;

/// What `#[projection(...)]` says.
#[derive(Default)]
pub struct ProjectionAttrs {
    /// The model the fields come from.
    pub of: Option<Type>,
    /// Where generated code finds the runtime, as for `#[model(crate = "...")]`.
    pub krate: Option<Path>,
}

pub fn projection(cx: &mut Ctxt, attrs: &[Attribute]) -> ProjectionAttrs {
    let mut out = ProjectionAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("projection")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("of") {
                out.of = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                out.krate = Some(lit.parse()?);
            } else {
                return Err(meta.error(
                    "unknown projection attribute; expected `of = Model` (the model whose fields this struct reads) or `crate = \"path\"`",
                ));
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.syn_error(error);
        }
        if out.of.is_none() {
            cx.error_spanned_by(
                attr,
                "name the model this struct reads its fields from: write `#[projection(of = Order)]`",
            );
        }
    }
    out
}
