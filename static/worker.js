// The pipeline worker (src/web/worker.rs): the app's own wasm, run a second time off the page's
// thread. The page names wasm-bindgen's generated module in `?glue=` and posts the
// WebAssembly.Module it compiled; instantiating it runs the app's main(), which sees that it is
// in a worker and waits for requests.
const glue = new URL(self.location.href).searchParams.get("glue");
self.onmessage = (event) => {
    self.onmessage = null;
    const start = new URL(glue, self.location.href).origin === self.location.origin
        ? import(glue).then((bindings) => bindings.default({ module_or_path: event.data }))
        : Promise.reject(new Error(`refusing to load ${glue} from another origin`));
    // A failed start becomes the worker's "error" event, which the page reports.
    start.catch((error) => setTimeout(() => { throw error; }));
};
