// Progressive enhancement only: every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  const status = document.querySelector(".copied");
  document.querySelectorAll("[data-copy]").forEach((button) => {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
        if (status) status.textContent = "Copied to the clipboard.";
      } catch (e) {
        if (status) status.textContent = "Copy failed: select the code and copy it by hand.";
      }
    });
  });
  document.querySelectorAll("[data-print]").forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", () => window.print());
  });
});
