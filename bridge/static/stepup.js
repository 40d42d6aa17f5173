// Progressive enhancement only: every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  const status = document.querySelector(".copied");
  const say = (key) => { if (status) status.textContent = status.dataset[key] || ""; };
  document.querySelectorAll("[data-copy]").forEach((button) => {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
        say("done");
      } catch (e) {
        say("failed");
      }
    });
  });
  document.querySelectorAll("[data-print]").forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", () => window.print());
  });
});
