/**
 * Where JSON text stops being valid. `JSON.parse` names the offset only for some errors, so after
 * it fails this scanner finds the first offending character (iteratively: deep nesting is fine).
 */

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const WS = /[ \t\n\r]*/y;

/** Offset of the first character that makes `text` invalid JSON, or -1 when it is valid. */
export function jsonErrorOffset(text: string): number {
  let pos = 0;
  const stack: string[] = [];
  let expect: 'value' | 'key' | 'after' = 'value';
  const ws = () => {
    WS.lastIndex = pos;
    WS.exec(text);
    pos = WS.lastIndex;
  };
  // returns the offset after the string, or -(offset of the error) - 1
  const str = (): number => {
    let i = pos + 1;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x22) return i + 1;
      if (c < 0x20) return -i - 1;
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return -(i + 1) - 1;
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          i += 2;
        } else {
          return -(i + 1) - 1;
        }
        continue;
      }
      i++;
    }
    return -text.length - 1;
  };
  for (;;) {
    ws();
    if (expect === 'value') {
      if (pos >= text.length) return pos;
      const c = text[pos];
      if (c === '{' || c === '[') {
        stack.push(c);
        pos++;
        ws();
        if (text[pos] === (c === '{' ? '}' : ']')) {
          stack.pop();
          pos++;
          expect = 'after';
        } else {
          expect = c === '{' ? 'key' : 'value';
        }
      } else if (c === '"') {
        const end = str();
        if (end < 0) return -end - 1;
        pos = end;
        expect = 'after';
      } else {
        NUMBER.lastIndex = pos;
        if (NUMBER.exec(text) !== null) pos = NUMBER.lastIndex;
        else {
          const lit = ['true', 'false', 'null'].find((w) => text.startsWith(w, pos));
          if (lit === undefined) return pos;
          pos += lit.length;
        }
        expect = 'after';
      }
    } else if (expect === 'key') {
      if (text[pos] !== '"') return pos;
      const end = str();
      if (end < 0) return -end - 1;
      pos = end;
      ws();
      if (text[pos] !== ':') return pos;
      pos++;
      expect = 'value';
    } else {
      const top = stack[stack.length - 1];
      if (top === undefined) return pos < text.length ? pos : -1;
      const c = text[pos];
      if (c === ',') {
        pos++;
        expect = top === '{' ? 'key' : 'value';
      } else if ((c === '}' && top === '{') || (c === ']' && top === '[')) {
        stack.pop();
        pos++;
      } else {
        return pos;
      }
    }
  }
}
