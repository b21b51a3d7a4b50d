"""Readers of the common box-annotation formats, each to :class:`Entry` records (one an image).

Every box becomes lungcad's convention (:mod:`lungcad.data.lesions`: pixel centres at whole
numbers, so a box covering pixel columns 10 to 29 is x0 = 9.5, x1 = 29.5). Per format:

* ``coco``: COCO JSON (``images``, ``annotations`` with ``bbox`` [x, y, w, h], ``categories``);
  continuous coordinates with pixel edges at whole numbers: x0 = x - 0.5, x1 = x + w - 0.5.
* ``voc``: Pascal VOC XML files (``filename``, ``object/name``, ``bndbox``), 1-based inclusive
  pixel indices as the VOC devkit writes them: x0 = xmin - 1.5, x1 = xmax - 0.5.
* ``cvat``: CVAT for images 1.1 XML (``image`` name, ``box`` label xtl ytl xbr ybr), pixel
  edges: x0 = xtl - 0.5, x1 = xbr - 0.5.
* ``yolo``: one ``.txt`` an image (``class cx cy w h``, fractions of the width and height),
  names from ``classes.txt`` or ``obj.names``: x0 = (cx - w / 2) * W - 0.5.
* ``node21``: NODE21's ``metadata.csv`` (``img_name``, ``x``, ``y``, ``width``, ``height``,
  ``label`` 1 nodule / 0 none; several rows for several nodules): x0 = x - 0.5.
* ``chestx-det``: ChestX-Det JSON (a list of ``file_name``, ``syms``, ``boxes`` [x0, y0, x1,
  y1]; polygons are not used), pixel edges: x0 - 0.5.
* ``nih-bbox``: NIH ChestX-ray14 ``BBox_List_2017.csv`` (Image Index, Finding Label, Bbox x, y,
  w, h), pixel edges: x0 = x - 0.5.

Errors name the file and the entry; nothing is written by these readers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from lungcad.errors import LungcadError

FORMATS = ("node21", "coco", "voc", "cvat", "yolo", "chestx-det", "nih-bbox")


@dataclass
class Box:
    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    where: str                  # "FILE: entry ..." for messages
    normalised: bool = False    # YOLO: fractions of the image, converted once its size is known


@dataclass
class Entry:
    image: str                  # as the annotation names it (relative to --images)
    boxes: list[Box] = field(default_factory=list)
    where: str = ""


def _number(value, where: str, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LungcadError(f"{where}: {what} is not a number ({value!r})") from None
    if not math.isfinite(number):
        raise LungcadError(f"{where}: {what} is not a finite number ({value!r})")
    return number


def _xywh(values, label: str, where: str) -> Box:
    """A box [x, y, w, h] on pixel edges, to lungcad's centres."""
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        raise LungcadError(f"{where}: the box must be 4 numbers [x, y, width, height], got "
                           f"{values!r}")
    x, y, w, h = (_number(v, where, name) for v, name in zip(values, "xywh"))
    if w <= 0 or h <= 0:
        raise LungcadError(f"{where}: the box has a width or height of zero or less ({w:g} x "
                           f"{h:g})")
    return Box(x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5, label, where)


def _edges(values, label: str, where: str, offset: float = 0.5) -> Box:
    """A box [x0, y0, x1, y1] on pixel edges (``offset`` 0.5) to lungcad's centres."""
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        raise LungcadError(f"{where}: the box must be 4 numbers [x0, y0, x1, y1], got {values!r}")
    x0, y0, x1, y1 = (_number(v, where, n) for v, n in zip(values, ("x0", "y0", "x1", "y1")))
    if not (x0 < x1 and y0 < y1):
        raise LungcadError(f"{where}: the box needs x0 < x1 and y0 < y1, got {values!r}")
    return Box(x0 - offset, y0 - offset, x1 - 0.5, y1 - 0.5, label, where)


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LungcadError(f"{path}: not a readable JSON file ({str(exc).splitlines()[0]})") \
            from None


def _load_xml(path: Path):
    import xml.etree.ElementTree as ET

    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise LungcadError(f"{path}: not a readable XML file ({exc})") from None


def _read_csv(path: Path, **kwargs):
    import pandas as pd

    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LungcadError(f"{path}: not a readable CSV file ({first})") from None


def read_coco(path: Path) -> list[Entry]:
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise LungcadError(f"{path}: not a COCO file (no 'images' list)")
    names = {}
    for k, c in enumerate(data.get("categories") or []):
        if not isinstance(c, dict) or "id" not in c:
            raise LungcadError(f"{path}: categories[{k}] has no id")
        names[c["id"]] = str(c.get("name", c["id"]))
    entries: dict = {}
    for k, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or not image.get("file_name"):
            raise LungcadError(f"{path}: images[{k}] lacks an id or a file_name")
        entries[image["id"]] = Entry(str(image["file_name"]), [], f"{path}: images[{k}]")
    for k, ann in enumerate(data.get("annotations") or []):
        where = f"{path}: annotations[{k}]"
        if not isinstance(ann, dict) or ann.get("image_id") not in entries:
            raise LungcadError(f"{where}: its image_id is not among the file's images")
        if ann.get("category_id") not in names:
            raise LungcadError(f"{where}: its category_id {ann.get('category_id')!r} is not "
                               "among the file's categories")
        entry = entries[ann["image_id"]]
        entry.boxes.append(_xywh(ann.get("bbox"), names[ann["category_id"]],
                                 f"{where} (image {entry.image})"))
    return list(entries.values())


def read_voc(path: Path) -> list[Entry]:
    root = _load_xml(path)
    name = (root.findtext("filename") or "").strip()
    if root.tag != "annotation" or not name:
        raise LungcadError(f"{path}: not a Pascal VOC annotation (no <annotation><filename>)")
    entry = Entry(name, [], str(path))
    for k, obj in enumerate(root.findall("object")):
        where = f"{path}: object {k + 1} (image {name})"
        box = obj.find("bndbox")
        if box is None:
            raise LungcadError(f"{where}: has no <bndbox>")
        values = [box.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")]
        entry.boxes.append(_edges(values, (obj.findtext("name") or "").strip(), where, 1.5))
    return [entry]


def read_cvat(path: Path) -> list[Entry]:
    root = _load_xml(path)
    if root.tag != "annotations":
        raise LungcadError(f"{path}: not a CVAT for images XML file (no <annotations>)")
    entries = []
    for k, image in enumerate(root.iter("image")):
        name = image.get("name")
        if not name:
            raise LungcadError(f"{path}: <image> {k + 1} has no name")
        entry = Entry(name, [], f"{path}: image {name}")
        for j, box in enumerate(image.findall("box")):
            where = f"{path}: image {name}, box {j + 1}"
            values = [box.get(t) for t in ("xtl", "ytl", "xbr", "ybr")]
            entry.boxes.append(_edges(values, box.get("label", ""), where))
        entries.append(entry)
    return entries


def read_yolo(path: Path, names: list[str]) -> list[Entry]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LungcadError(f"{path}: not a readable text file ({exc})") from None
    entry = Entry(path.stem, [], str(path))
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path}: line {k + 1}"
        parts = line.split()
        if len(parts) != 5:
            raise LungcadError(f"{where}: a YOLO line is 'class cx cy w h', got {line.strip()!r}")
        cls = parts[0]
        if not cls.isdigit():
            raise LungcadError(f"{where}: the class {cls!r} is not a whole number")
        label = names[int(cls)] if int(cls) < len(names) else f"class{cls}"
        cx, cy, w, h = (_number(v, where, n) for v, n in zip(parts[1:], ("cx", "cy", "w", "h")))
        if w <= 0 or h <= 0 or not all(0 <= v <= 1 for v in (cx, cy, w, h)):
            raise LungcadError(f"{where}: cx, cy, w and h must be fractions of the image in [0, 1] "
                               "and w, h above 0")
        entry.boxes.append(Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, label, where,
                               normalised=True))
    return [entry]


def yolo_names(sources: list[Path]) -> list[str]:
    """Class names from a classes.txt or obj.names given or beside the label files."""
    candidates = [p for p in sources if p.is_file() and p.name in ("classes.txt", "obj.names")]
    for folder in {p if p.is_dir() else p.parent for p in sources}:
        candidates += [folder / n for n in ("classes.txt", "obj.names") if (folder / n).is_file()]
    if not candidates:
        return []
    return [line.strip() for line in candidates[0].read_text().splitlines() if line.strip()]


def read_node21(path: Path) -> list[Entry]:
    table = _read_csv(path)
    table.columns = [c.strip().lower() for c in table.columns]
    name_col = next((c for c in ("img_name", "image", "file_name") if c in table.columns), None)
    missing = [c for c in ("x", "y", "width", "height", "label") if c not in table.columns]
    if name_col is None or missing:
        raise LungcadError(f"{path}: not a NODE21 metadata.csv (needs img_name, x, y, width, "
                           f"height, label; lacks {', '.join(missing or ['img_name'])})")
    entries: dict[str, Entry] = {}
    for k, row in table.iterrows():
        name = row[name_col].strip()
        where = f"{path}: data row {k + 1} (image {name})"
        if not name:
            raise LungcadError(f"{path}: data row {k + 1} has no {name_col}")
        entry = entries.setdefault(name, Entry(name, [], where))
        flag = row["label"].strip()
        if flag not in ("0", "1", "0.0", "1.0"):
            raise LungcadError(f"{where}: label must be 1 (nodule) or 0 (none), got {flag!r}")
        if float(flag) == 1:
            entry.boxes.append(_xywh([row[c] for c in ("x", "y", "width", "height")], "nodule",
                                     where))
    return list(entries.values())


def read_chestx_det(path: Path) -> list[Entry]:
    data = _load_json(path)
    if not isinstance(data, list):
        raise LungcadError(f"{path}: not a ChestX-Det file (expected a list of images)")
    entries = []
    for k, item in enumerate(data):
        where = f"{path}: entry {k}"
        if not isinstance(item, dict) or not item.get("file_name"):
            raise LungcadError(f"{where}: has no file_name")
        syms, boxes = item.get("syms") or [], item.get("boxes") or []
        if len(syms) != len(boxes):
            raise LungcadError(f"{where} ({item['file_name']}): {len(syms)} labels (syms) for "
                               f"{len(boxes)} boxes")
        entries.append(Entry(str(item["file_name"]), [
            _edges(b, str(s), f"{where} ({item['file_name']}), box {j + 1}")
            for j, (s, b) in enumerate(zip(syms, boxes))], where))
    return entries


def read_nih_bbox(path: Path) -> list[Entry]:
    table = _read_csv(path, header=None, skiprows=1)
    if table.shape[1] < 6:
        raise LungcadError(f"{path}: not an NIH BBox_List_2017.csv (expected Image Index, Finding "
                           "Label and the four Bbox columns x, y, w, h)")
    entries: dict[str, Entry] = {}
    for k, row in table.iterrows():
        name = str(row[0]).strip()
        where = f"{path}: data row {k + 1} (image {name})"
        entry = entries.setdefault(name, Entry(name, [], where))
        entry.boxes.append(_xywh([row[j] for j in range(2, 6)], str(row[1]), where))
    return list(entries.values())


def read_annotations(fmt: str, sources: list[Path]) -> list[Entry]:
    """Every entry of the ``sources`` (files, or folders of .xml / .txt files for voc / yolo)."""
    if fmt not in FORMATS:
        raise LungcadError(f"unknown annotation format {fmt!r}; use one of {', '.join(FORMATS)}")
    for source in sources:
        if not source.exists():
            raise LungcadError(f"annotation source not found: {source}")
    suffix = {"voc": ".xml", "yolo": ".txt"}.get(fmt)
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            if suffix is None:
                inside = source / "metadata.csv"
                if fmt == "node21" and inside.is_file():
                    files.append(inside)
                    continue
                raise LungcadError(f"{source} is a folder; give the {fmt} annotation file")
            files += sorted(p for p in source.rglob(f"*{suffix}") if p.is_file())
        else:
            files.append(source)
    if fmt == "yolo":
        names = yolo_names(sources)
        files = [p for p in files if p.name not in ("classes.txt", "obj.names")]
        return [e for p in files for e in read_yolo(p, names)]
    reader = {"node21": read_node21, "coco": read_coco, "voc": read_voc, "cvat": read_cvat,
              "chestx-det": read_chestx_det, "nih-bbox": read_nih_bbox}[fmt]
    if not files:
        raise LungcadError(f"no {fmt} annotation files in {', '.join(map(str, sources))}")
    return [e for p in files for e in reader(p)]
