// Plays Save Animation's GIF on the node.
//
// Why: the editor (comfyui-frontend-package 1.32) shows an "animated" result in an <img> only when its file name
// contains webp or png; any other animation goes to a <video> element, which cannot play a GIF, so the node
// stayed empty. Here the GIF is loaded as the node's preview image; the editor then shows it in its own
// animated-image widget (an <img>, which the browser plays). WebP and MP4 results are left to the editor.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

app.registerExtension({
  name: "ADMK.SaveAnimation.GifPreview",
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "ADMK_SaveAnimation") return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const item = message?.images?.[0];
      if (!item?.filename?.toLowerCase().endsWith(".gif")) return;
      const query = new URLSearchParams({ filename: item.filename, subfolder: item.subfolder ?? "",
                                          type: item.type ?? "output" });
      const img = new Image();
      img.onload = () => {
        this.imgs = [img];
        this.imageIndex = null;
        this.graph?.setDirtyCanvas(true, true);
      };
      img.src = api.apiURL(`/view?${query}&t=${Date.now()}`);
    };
  },
});
