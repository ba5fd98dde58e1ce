// Copy buttons for the code snippets. Without JavaScript they stay hidden and the text is
// selectable as usual; with it, a click copies the snippet (or selects it where the browser
// refuses clipboard access, e.g. on plain http from another host).
for (const button of document.querySelectorAll("button[data-copy]")) {
  const code = document.getElementById(button.dataset.copy);
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(code.textContent);
      button.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
  });
}
