// The Steering page's latent map (a Streamlit custom component v2): inline SVG, no CDN. Click or drag to
// choose a point of the plane; on release the point is sent back as the state value "xy".
export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const svg = parentElement.querySelector('.lm-svg');
  const read = parentElement.querySelector('.lm-read');
  if (!svg || !data) return;
  const NS = 'http://www.w3.org/2000/svg';
  const W = 520, H = 420, ML = 16, MR = 16, MT = 40, MB = 28;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const [x0, x1] = data.bounds.x, [y0, y1] = data.bounds.y;
  const px = (x) => ML + (x - x0) / (x1 - x0) * (W - ML - MR);
  const py = (y) => H - MB - (y - y0) / (y1 - y0) * (H - MT - MB);
  const ux = (p) => x0 + (p - ML) / (W - ML - MR) * (x1 - x0);
  const uy = (p) => y0 + (H - MB - p) / (H - MT - MB) * (y1 - y0);
  const el = (tag, attrs, parent) => {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    (parent || svg).appendChild(e);
    return e;
  };
  // axes through the origin of the plane (the mean code)
  el('rect', { x: ML, y: MT, width: W - ML - MR, height: H - MT - MB, fill: 'none', stroke: '#ddd' });
  el('line', { x1: px(0), x2: px(0), y1: MT, y2: H - MB, stroke: '#bbb', 'stroke-dasharray': '3 3' });
  el('line', { x1: ML, x2: W - MR, y1: py(0), y2: py(0), stroke: '#bbb', 'stroke-dasharray': '3 3' });
  el('text', { x: W - MR, y: H - 9, 'text-anchor': 'end', fill: '#666' }).textContent = data.xlabel + ' →';
  el('text', { x: ML + 4, y: MT + 14, fill: '#666' }).textContent = '↑ ' + data.ylabel;
  const g = el('g', { 'pointer-events': 'none' });
  const pts = data.points, lab = data.labels, pal = data.palette;
  for (let i = 0; i < pts.length; i++) {
    el('circle', { cx: px(pts[i][0]).toFixed(1), cy: py(pts[i][1]).toFixed(1), r: 3,
                   fill: lab[i] >= 0 ? pal[lab[i]] : '#999', 'fill-opacity': 0.75,
                   stroke: '#333', 'stroke-opacity': 0.25, 'stroke-width': 0.5 }, g);
  }
  for (const c of data.centroids) {
    el('text', { x: px(c.xy[0]), y: py(c.xy[1]) + 4, 'text-anchor': 'middle', 'font-weight': 700,
                 'font-size': 14, fill: '#111', stroke: '#fff', 'stroke-width': 3, 'paint-order': 'stroke' }, g)
      .textContent = c.name;
  }
  // legend
  data.names.forEach((n, i) => {
    el('circle', { cx: ML + 6 + i * 112, cy: 18, r: 5, fill: pal[i] });
    el('text', { x: ML + 14 + i * 112, y: 22, fill: '#444' }).textContent = n;
  });
  // the draggable selection
  const mk = el('g', { class: 'lm-marker' });
  el('circle', { r: 11, fill: 'none', stroke: '#000', 'stroke-width': 2.5 }, mk);
  el('circle', { r: 3, fill: '#000' }, mk);
  el('line', { x1: -17, x2: -8, y1: 0, y2: 0, stroke: '#000', 'stroke-width': 2 }, mk);
  el('line', { x1: 8, x2: 17, y1: 0, y2: 0, stroke: '#000', 'stroke-width': 2 }, mk);
  el('line', { x1: 0, x2: 0, y1: -17, y2: -8, stroke: '#000', 'stroke-width': 2 }, mk);
  el('line', { x1: 0, x2: 0, y1: 8, y2: 17, stroke: '#000', 'stroke-width': 2 }, mk);
  const code = (x, y) => data.mean.map((m, j) => m + x * data.components[0][j] + y * data.components[1][j]);
  const show = (x, y) => {
    mk.setAttribute('transform', `translate(${px(x).toFixed(1)},${py(y).toFixed(1)})`);
    read.textContent = `(x, y) = (${x.toFixed(2)}, ${y.toFixed(2)})   z = [${code(x, y).map((v) => v.toFixed(2)).join(', ')}]`;
  };
  let cur = { x: data.selected.x, y: data.selected.y };
  show(cur.x, cur.y);
  const toUser = (ev) => {
    const r = svg.getBoundingClientRect();
    const sx = (ev.clientX - r.left) / r.width * W, sy = (ev.clientY - r.top) / r.height * H;
    const cx = Math.min(W - MR, Math.max(ML, sx)), cy = Math.min(H - MB, Math.max(MT, sy));
    return { x: ux(cx), y: uy(cy) };
  };
  let dragging = false;
  svg.onpointerdown = (ev) => {
    dragging = true;
    try { svg.setPointerCapture(ev.pointerId); } catch (e) {}
    cur = toUser(ev); show(cur.x, cur.y);
    ev.preventDefault();
  };
  svg.onpointermove = (ev) => { if (dragging) { cur = toUser(ev); show(cur.x, cur.y); } };
  const finish = (ev) => {
    if (!dragging) return;
    dragging = false;
    cur = toUser(ev); show(cur.x, cur.y);
    setStateValue('xy', { x: Number(cur.x.toFixed(4)), y: Number(cur.y.toFixed(4)) });
  };
  svg.onpointerup = finish;
  svg.onpointercancel = () => { dragging = false; };
  return () => { svg.onpointerdown = svg.onpointermove = svg.onpointerup = svg.onpointercancel = null; };
}
