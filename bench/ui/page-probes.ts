/**
 * Scripts the bench runs inside the page (as strings: the bench compiles without DOM types).
 * Each returns plain numbers; nothing here changes what the UI does.
 */

/**
 * Scrolls the history table by `step` px on every animation frame for `ms`, and returns the
 * time between frames (requestAnimationFrame deltas): at 60 fps each is about 16.7 ms, and a
 * frame the page could not finish in time shows as a longer one. `step` 'jump' moves to a random
 * place every frame (a dragged scrollbar: the worst case, a new block of rows each frame).
 */
export function scrollProbe(step: number | 'jump', ms: number): string {
  return `(async () => {
    const scroller = document.querySelector('.table-wrap');
    scroller.scrollTop = 0;
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    const max = scroller.scrollHeight - scroller.clientHeight;
    let seed = 7;
    const random = () => { seed = (seed * 48271) % 2147483647; return seed / 2147483647; };
    const deltas = [];
    let last = performance.now();
    const end = last + ${ms};
    let direction = 1;
    await new Promise((resolve) => {
      const frame = (now) => {
        deltas.push(now - last);
        last = now;
        ${step === 'jump'
          ? 'scroller.scrollTop = Math.floor(random() * max);'
          : `if (scroller.scrollTop >= max - 1) direction = -1; else if (scroller.scrollTop <= 0) direction = 1;
             scroller.scrollTop += direction * ${step};`}
        if (now < end) requestAnimationFrame(frame); else resolve();
      };
      requestAnimationFrame(frame);
    });
    return { deltas: deltas.slice(1), domRows: document.querySelectorAll('table.requests tbody tr').length };
  })()`;
}

/**
 * Clicks a column's sort button and returns the time the click handler took (sort + the rows
 * in view rendered, synchronously) and the time until the next frame was painted.
 */
export function sortProbe(key: string): string {
  return `(async () => {
    const button = document.querySelector('button[data-sort="${key}"]');
    const t0 = performance.now();
    button.click();
    const handled = performance.now() - t0;
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    return { handled, painted: performance.now() - t0 };
  })()`;
}

/** The "N rows loaded" count of the summary line. */
export const LOADED_PROBE = `Number((document.querySelector('#table-summary').textContent.match(/^([\\d,]+) rows? loaded/) || ['', '-1'])[1].replace(/,/g, ''))`;

/**
 * The sort alone (no rendering): the UI's own sortRows on `count` synthetic records, by each
 * column, median of 5 runs, in ms.
 */
export function pureSortProbe(count: number): string {
  return `(async () => {
    const { sortRows } = await import('/js/requests-table.js');
    const records = [];
    for (let i = 0; i < ${count}; i += 1) {
      records.push({ id: i + 1, started_at: new Date(1.7e12 + i * 5000).toISOString(), decision: i % 13 ? 'allow' : 'deny', would_deny: false,
        client_ip: '10.1.' + ((i >> 8) & 255) + '.' + (i & 255), node: 'n', host: 'svc-' + (i % 211) + '.api.example.com', port: 443,
        path: i % 3 ? null : '/v1/items/' + i, status: [200, 204, 301, 502][i % 4], rule: 'allow-' + (i % 17), reason: 'matched rule',
        bytes_up: i * 7, bytes_down: i * 31, ended_at: 'x', duration_ms: i % 900 });
    }
    const out = {};
    for (const key of ['id', 'time', 'status', 'request', 'why', 'bytes', 'duration', 'client']) {
      const runs = [];
      for (let r = 0; r < 5; r += 1) { const t0 = performance.now(); sortRows(records, key); runs.push(performance.now() - t0); }
      runs.sort((a, b) => a - b);
      out[key] = runs[2];
    }
    return out;
  })()`;
}
