// Reads a JSON array of LaTeX strings on stdin and renders each with KaTeX in display
// mode, throwing on any error (unknown macro, bad nesting, non-LaTeX characters).
// Prints one line per failure and exits 1 if any failed.
import katex from "katex";

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const items = JSON.parse(input);
let failed = 0;
items.forEach((tex, i) => {
  try {
    katex.renderToString(tex, { displayMode: true, throwOnError: true, strict: "error" });
  } catch (e) {
    failed++;
    console.log(`#${i}: ${e.message}\n${tex}\n`);
  }
});
console.log(`katex: ${items.length - failed}/${items.length} rendered`);
process.exit(failed ? 1 : 0);
