/**
 * The few XML reads the lean S3 transport needs: S3's ListObjectsV2 result and error bodies. Both are
 * flat, attribute-free documents in a fixed shape, so element text is found by name; `decodeXml` turns
 * the five named entities and character references back into text (S3 escapes keys that way).
 * Values are not trimmed, as the SDK's parser does not trim them either.
 */

/** The inner text of every `<name>` element of `xml` (not nested in one another), in order. */
export function xmlElements(xml: string, name: string): string[] {
  const out: string[] = [];
  const re = new RegExp(`<${name}(?:\\s[^>]*)?(?:/>|>([\\s\\S]*?)</${name}\\s*>)`, 'g');
  for (let m = re.exec(xml); m; m = re.exec(xml)) out.push(m[1] ?? '');
  return out;
}

/** The raw (still escaped) text of the first `<name>` element, or undefined when there is none. */
export function xmlText(xml: string, name: string): string | undefined {
  return xmlElements(xml, name)[0];
}

const NAMED: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function decodeXml(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, ref: string) => {
    if (ref.startsWith('#x')) return safeCodePoint(parseInt(ref.slice(2), 16)) ?? whole;
    if (ref.startsWith('#')) return safeCodePoint(parseInt(ref.slice(1), 10)) ?? whole;
    return NAMED[ref] ?? whole;
  });
}

function safeCodePoint(n: number): string | undefined {
  return Number.isInteger(n) && n >= 0 && n <= 0x10ffff ? String.fromCodePoint(n) : undefined;
}
