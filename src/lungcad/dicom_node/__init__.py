"""lungcad on the DICOM network: a Storage SCP that answers each received image with an SR and an
overlay stored to a destination (``lungcad listen``), and the DICOMweb flow that fetches a study
over WADO-RS and stores the results back with STOW-RS (``lungcad pacs``)."""

from lungcad.dicom_node.delivery import RetryPolicy
from lungcad.dicom_node.destination import Destination, parse_destination
from lungcad.dicom_node.scp import DicomNode, NodeStats
from lungcad.dicom_node.web import process_study

__all__ = ["DicomNode", "Destination", "NodeStats", "RetryPolicy", "parse_destination",
           "process_study"]
