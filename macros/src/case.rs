//! Name conversions: serde's `rename_all` rules for fields, and the default collection name.

/// A serde `rename_all` rule, applied to a field name exactly as serde applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameRule {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl RenameRule {
    pub const NAMES: &'static [(&'static str, RenameRule)] = &[
        ("lowercase", RenameRule::Lower),
        ("UPPERCASE", RenameRule::Upper),
        ("PascalCase", RenameRule::Pascal),
        ("camelCase", RenameRule::Camel),
        ("snake_case", RenameRule::Snake),
        ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnake),
        ("kebab-case", RenameRule::Kebab),
        ("SCREAMING-KEBAB-CASE", RenameRule::ScreamingKebab),
    ];

    pub fn from_str(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, rule)| *rule)
    }

    /// Field names are snake_case in Rust; this mirrors `serde_derive`'s `apply_to_field`.
    pub fn apply_to_field(self, field: &str) -> String {
        match self {
            RenameRule::Lower | RenameRule::Snake => field.to_owned(),
            RenameRule::Upper | RenameRule::ScreamingSnake => field.to_ascii_uppercase(),
            RenameRule::Pascal => {
                let mut pascal = String::new();
                let mut capitalize = true;
                for ch in field.chars() {
                    if ch == '_' {
                        capitalize = true;
                    } else if capitalize {
                        pascal.push(ch.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        pascal.push(ch);
                    }
                }
                pascal
            }
            RenameRule::Camel => {
                let pascal = RenameRule::Pascal.apply_to_field(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => pascal,
                }
            }
            RenameRule::Kebab => field.replace('_', "-"),
            RenameRule::ScreamingKebab => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

/// `OrderItem` -> `order_items`: the struct name in snake_case, pluralised with English suffix rules.
pub fn default_collection_name(struct_name: &str) -> String {
    let mut snake = String::new();
    let chars: Vec<char> = struct_name.chars().collect();
    for (i, &ch) in chars.iter().enumerate() {
        if ch.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|c| c.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if prev_lower || (prev_upper && next_lower) {
                snake.push('_');
            }
            snake.extend(ch.to_lowercase());
        } else {
            snake.push(ch);
        }
    }
    pluralize(&snake)
}

fn pluralize(word: &str) -> String {
    const IRREGULAR: &[(&str, &str)] = &[
        ("person", "people"),
        ("child", "children"),
        ("man", "men"),
        ("woman", "women"),
    ];
    let (stem, last) = match word.rfind('_') {
        Some(at) => word.split_at(at + 1),
        None => ("", word),
    };
    if let Some((_, plural)) = IRREGULAR.iter().find(|(single, _)| *single == last) {
        return format!("{stem}{plural}");
    }
    let ends_with_consonant_y = last.ends_with('y')
        && last
            .chars()
            .rev()
            .nth(1)
            .is_some_and(|c| !"aeiou".contains(c));
    if ends_with_consonant_y {
        format!("{}ies", &word[..word.len() - 1])
    } else if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|suffix| last.ends_with(suffix))
    {
        format!("{word}es")
    } else {
        format!("{word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names() {
        assert_eq!(default_collection_name("Ticket"), "tickets");
        assert_eq!(default_collection_name("OrderItem"), "order_items");
        assert_eq!(default_collection_name("Category"), "categories");
        assert_eq!(default_collection_name("Address"), "addresses");
        assert_eq!(default_collection_name("Key"), "keys");
        assert_eq!(default_collection_name("Box"), "boxes");
        assert_eq!(default_collection_name("Person"), "people");
        assert_eq!(default_collection_name("HTTPRequest"), "http_requests");
        assert_eq!(default_collection_name("SalesPerson"), "sales_people");
    }

    #[test]
    fn rename_rules_match_serde() {
        let cases = [
            ("lowercase", "created_at"),
            ("UPPERCASE", "CREATED_AT"),
            ("PascalCase", "CreatedAt"),
            ("camelCase", "createdAt"),
            ("snake_case", "created_at"),
            ("SCREAMING_SNAKE_CASE", "CREATED_AT"),
            ("kebab-case", "created-at"),
            ("SCREAMING-KEBAB-CASE", "CREATED-AT"),
        ];
        for (rule, expected) in cases {
            let rule = RenameRule::from_str(rule).unwrap();
            assert_eq!(rule.apply_to_field("created_at"), expected);
        }
        assert_eq!(RenameRule::from_str("Camel"), None);
    }
}
